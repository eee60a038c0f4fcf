# Sourced by the tests that need two "hosts" on one machine: netns_pair NAME_A NAME_B SUBNET
# creates network namespaces NAME_A and NAME_B joined by a veth pair, with SUBNET.1/24 in the
# first and SUBNET.2/24 in the second, loopback up in both, and deletes them when the shell
# exits (it sets the EXIT trap; pass extra clean-up as a command in NETNS_PAIR_CLEANUP).
# Returns 1 when namespaces cannot be created here (no privileges, a container).
netns_pair() {
  local a=$1 b=$2 subnet=$3
  NETNS_PAIR_NAMES="$a $b"
  trap 'for ns in $NETNS_PAIR_NAMES; do ip netns del "$ns" 2>/dev/null || true; done; eval "${NETNS_PAIR_CLEANUP:-}"' EXIT
  ip netns add "$a" 2>/dev/null || return 1
  ip netns add "$b"
  ip link add "v$a" type veth peer name "v$b"
  ip link set "v$a" netns "$a"
  ip link set "v$b" netns "$b"
  ip -n "$a" addr add "$subnet.1/24" dev "v$a"
  ip -n "$b" addr add "$subnet.2/24" dev "v$b"
  for ns in "$a" "$b"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "v$ns" up
  done
}

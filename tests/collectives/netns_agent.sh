#!/bin/sh
# wvrun's launch agent for coll_netns_test.sh: "netns_agent.sh HOST WORDS..." runs WORDS in the
# network namespace HOST under a UTS namespace whose host name is HOST, so each namespace is a
# host of its own to wv's topology (host name) and transport (addresses, and the shm side doors,
# which are abstract unix sockets of the namespace).
host=$1
shift
exec ip netns exec "$host" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$host" "$*"

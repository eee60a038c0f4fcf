#!/bin/sh
# Stands in for ssh in wvrun_test.sh: "fake_ssh.sh HOST WORDS..." runs WORDS here through a
# shell, as sshd would on HOST, so wvrun's remote launch (quoting, env) is tested on one machine.
shift
exec sh -c "$*"

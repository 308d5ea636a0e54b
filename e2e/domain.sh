#!/usr/bin/env bash
# Prints the XML of a test domain; see domain_xml in lib.sh for the options.
#   domain.sh NAME [--vcpus N] [--current-vcpus N] [--memory MIB] [--queues N]
#             [--model M] [--mac MAC] [--ip ADDR/PFX|none] [--cmdline STR]
#             [--no-nic] [--no-agent] [--devices-xml XML] [--metadata-xml XML]
# e.g. e2e/domain.sh virtmq-e2e-a --queues 4 | virsh define /dev/stdin
set -euo pipefail
# shellcheck source=e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
(($#)) || { sed -n '2,6s/^# \{0,1\}//p' "$0" >&2; exit 2; }
domain_xml "$@"

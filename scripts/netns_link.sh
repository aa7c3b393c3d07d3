#!/usr/bin/env bash
# Kernel-level link shaping between a "device" and an "edge" network namespace (needs root).
#
#   scripts/netns_link.sh up   [--prefix gelato] [--uplink 1mbit] [--downlink 10mbit] [--burst 16kb] [--subnet 10.77.0]
#   scripts/netns_link.sh exec dev|edge [--prefix gelato] -- COMMAND...
#   scripts/netns_link.sh status [--prefix gelato]
#   scripts/netns_link.sh down [--prefix gelato]
#
# Creates namespaces <prefix>-dev (address <subnet>.1) and <prefix>-edge (<subnet>.2) joined by a veth
# pair, with a token-bucket filter (tc tbf) on each side's egress: device->edge at --uplink,
# edge->device at --downlink. This kernel has no netem, so there is no delay or loss here: add them with
# the user-space emulator (`gelato link --delay-ms ... --loss ...`) running inside a namespace.
#
# Example (three terminals):
#   sudo scripts/netns_link.sh up --uplink 2mbit --downlink 20mbit
#   sudo scripts/netns_link.sh exec edge -- gelato serve models/target --host 10.77.0.2 --port 50051
#   sudo scripts/netns_link.sh exec dev  -- gelato device --edge 10.77.0.2:50051 --draft-dir models/draft --prompt "..."
#   sudo scripts/netns_link.sh down
set -euo pipefail

cmd="${1:-}"; shift || true
prefix=gelato; uplink=1mbit; downlink=10mbit; burst=16kb; subnet=10.77.0; role=""
if [[ "$cmd" == exec ]]; then role="${1:-}"; shift || true; fi
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2;;
    --uplink) uplink="$2"; shift 2;;
    --downlink) downlink="$2"; shift 2;;
    --burst) burst="$2"; shift 2;;
    --subnet) subnet="$2"; shift 2;;
    --) shift; break;;
    *) echo "netns_link.sh: unknown option $1" >&2; exit 2;;
  esac
done

die() { echo "netns_link.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces and tc need CAP_NET_ADMIN)"
command -v ip >/dev/null || die "'ip' (iproute2) not found"
command -v tc >/dev/null || die "'tc' (iproute2) not found"
[[ ${#prefix} -le 10 ]] || die "--prefix must be at most 10 characters (interface names are limited to 15)"

dev_ns="${prefix}-dev"; edge_ns="${prefix}-edge"; veth_dev="${prefix}-d"; veth_edge="${prefix}-e"

case "$cmd" in
  up)
    trap 'ip netns del "$dev_ns" 2>/dev/null || true; ip netns del "$edge_ns" 2>/dev/null || true' ERR
    ip netns add "$dev_ns"
    ip netns add "$edge_ns"
    ip link add "$veth_dev" netns "$dev_ns" type veth peer name "$veth_edge" netns "$edge_ns"
    ip -n "$dev_ns" addr add "${subnet}.1/24" dev "$veth_dev"
    ip -n "$edge_ns" addr add "${subnet}.2/24" dev "$veth_edge"
    for ns in "$dev_ns" "$edge_ns"; do ip -n "$ns" link set lo up; done
    ip -n "$dev_ns" link set "$veth_dev" up
    ip -n "$edge_ns" link set "$veth_edge" up
    ip netns exec "$dev_ns" tc qdisc add dev "$veth_dev" root tbf rate "$uplink" burst "$burst" latency 200ms
    ip netns exec "$edge_ns" tc qdisc add dev "$veth_edge" root tbf rate "$downlink" burst "$burst" latency 200ms
    trap - ERR
    echo "up: $dev_ns ${subnet}.1 --[$uplink up / $downlink down]-- $edge_ns ${subnet}.2"
    ;;
  exec)
    [[ "$role" == dev || "$role" == edge ]] || die "exec needs 'dev' or 'edge'"
    [[ $# -gt 0 ]] || die "exec needs a command after --"
    ns="${prefix}-${role}"
    exec ip netns exec "$ns" "$@"
    ;;
  status)
    for ns in "$dev_ns" "$edge_ns"; do
      echo "== $ns"; ip -n "$ns" -brief addr 2>/dev/null || echo "(absent)"
      ip netns exec "$ns" tc -s qdisc show 2>/dev/null || true
    done
    ;;
  down)
    ip netns del "$dev_ns" 2>/dev/null || true
    ip netns del "$edge_ns" 2>/dev/null || true
    echo "down: removed $dev_ns and $edge_ns"
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2;;
esac

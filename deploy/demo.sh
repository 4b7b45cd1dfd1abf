#!/bin/bash
# offlane all-in-one demo (README quick start): a real Open vSwitch (userspace datapath,
# in its own network namespace), `offlane serve --agent` on the embedded store, and a
# sample NFV topology created through the API with the offlane CLI: two projects, each
# with a VXLAN tenant network (both 10.0.0.0/24) and a VLAN provider network, a router
# with SNAT to a flat external network, a floating IP, a security group, a QoS policy, a
# vhost-user VNF port and network-namespace VMs. It checks connectivity for real, prints
# a report, and stays up until Ctrl-C (or `make demo-down` from another shell), then
# removes everything it made.
#
#   deploy/demo.sh up      # the default; DEMO_EXIT=1 tears down right after the report
#   deploy/demo.sh down    # remove a demo left running
#
# OVS-DPDK: when the DPDK build of OVS is installed and 1 GiB of 2M hugepages can be had
# (DEMO_DPDK=auto, the default; =off skips it), ovs-vswitchd is the DPDK build and the
# VNF is dpdk-testpmd (icmpecho) on the vhost-user port; otherwise the vhost-user port
# shows ERROR with the planner's reason.
set -euo pipefail

DIR=${OFFLANE_DEMO_DIR:-/run/offlane-demo}
NS=ol-demo                       # ovs-vswitchd's namespace
EXT=ol-demo-ext                  # the "internet" server on the external network
API=127.0.0.1:${OFFLANE_DEMO_PORT:-9696}
METRICS=127.0.0.1:${OFFLANE_DEMO_METRICS:-9477}
HOST=demo-node
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${OFFLANE_BIN:-$ROOT/bin/offlane}
VMS=(a-vm1 a-vm2 a-vm3 a-vm4 b-vm1 b-vm2)
export OFFLANE_URL=http://$API

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
ovs() { OVS_RUNDIR=$DIR/ovs OVS_DBDIR=$DIR/ovs OVS_LOGDIR=$DIR/ovs "$@"; }
vsctl() { ovs ovs-vsctl --db="unix:$DIR/ovs/db.sock" "$@"; }

down() {
	set +e
	# the agent's qrouter-/qdhcp- namespaces are named after the demo's routers and networks
	local owned=()
	if [ -f "$DIR/offlane.pid" ]; then
		for id in $("$BIN" router list -c id -o value 2>/dev/null); do owned+=("qrouter-$id"); done
		for id in $("$BIN" network list -c id -o value 2>/dev/null); do owned+=("qdhcp-$id"); done
		pid=$(cat "$DIR/offlane.pid")
		kill "$pid" 2>/dev/null && for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	[ -f "$DIR/testpmd.pid" ] && kill "$(cat "$DIR/testpmd.pid")" 2>/dev/null
	for vm in "${VMS[@]}"; do ip netns del "ol-demo-$vm" 2>/dev/null; done
	for ns in "${owned[@]}"; do ip netns del "$ns" 2>/dev/null; done
	if [ -f "$DIR/ovs/ovs-vswitchd.pid" ]; then
		ovs ovs-appctl -t "$DIR/ovs/ovs-vswitchd.ctl" exit --cleanup 2>/dev/null
		kill "$(cat "$DIR/ovs/ovs-vswitchd.pid")" 2>/dev/null
	fi
	[ -f "$DIR/ovs/ovsdb-server.pid" ] && kill "$(cat "$DIR/ovs/ovsdb-server.pid")" 2>/dev/null
	ip netns del "$EXT" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	if mountpoint -q "$DIR/huge" 2>/dev/null; then
		for _ in $(seq 50); do umount "$DIR/huge" 2>/dev/null && break; sleep 0.1; done
	fi
	[ -f "$DIR/nr_hugepages" ] && cat "$DIR/nr_hugepages" >/proc/sys/vm/nr_hugepages
	rm -rf /var/run/dpdk/oldemo-ovs /var/run/dpdk/oldemo-vnf
	rm -rf "$DIR"
	set -e
}

if [ "${1:-up}" = down ]; then
	down
	echo "offlane demo: removed"
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it starts Open vSwitch and creates namespaces)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "demo: $BIN missing: run 'make build' (make demo does)" >&2; exit 2; }
if [ -d "$DIR" ]; then
	echo "demo: a previous demo is in $DIR: removing it first"
	down
fi
trap 'echo; say "stopping"; down' EXIT
trap 'exit 130' INT TERM

say "starting Open vSwitch (userspace datapath) in namespace $NS"
mkdir -p "$DIR/ovs" "$DIR/data"
ip netns add "$NS"
ip -n "$NS" link set lo up
ovs ovsdb-tool create "$DIR/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovs ovsdb-server "$DIR/ovs/conf.db" --remote="punix:$DIR/ovs/db.sock" --pidfile="$DIR/ovs/ovsdb-server.pid" \
	--unixctl="$DIR/ovs/ovsdb-server.ctl" --log-file="$DIR/ovs/ovsdb-server.log" --detach --no-chdir
vsctl --no-wait init
vsctl --no-wait set Open_vSwitch . ovs_version="$(ovs-vsctl --version | awk 'NR == 1 {print $NF}')"
# OVS-DPDK when it can be had: the DPDK build, 1 GiB of 2M hugepages (OVS 512 MB, the
# testpmd VNF 256 MB), a PMD on the second CPU that sleeps when idle. DPDK labs take the
# lab's DPDK lock (a PMD and testpmd each spin a core).
VSWITCHD=/usr/lib/openvswitch-switch/ovs-vswitchd
DPDK=off
hugefree() { awk '/HugePages_Free/ {print $2}' /proc/meminfo; }
if [ "${DEMO_DPDK:-auto}" != off ] && [ -x /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk ] && command -v dpdk-testpmd >/dev/null; then
	lock=/run/lock/offlane-lab-dpdk.lock
	[ -d /run/lock ] || lock=${TMPDIR:-/tmp}/offlane-lab-dpdk.lock # where test/lab takes it too
	exec 9>"$lock" && flock 9
	if [ "$(hugefree)" -lt 512 ]; then
		cat /proc/sys/vm/nr_hugepages >"$DIR/nr_hugepages"
		echo $(($(cat /proc/sys/vm/nr_hugepages) + 512 - $(hugefree))) >/proc/sys/vm/nr_hugepages 2>/dev/null || true
	fi
	if [ "$(hugefree)" -ge 512 ] && mkdir -p "$DIR/huge" && mount -t hugetlbfs -o pagesize=2M nodev "$DIR/huge"; then
		DPDK=on
		VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
		pmd=0x1; [ "$(nproc)" -gt 1 ] && pmd=0x2
		vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true other_config:dpdk-lcore-mask=0x1 \
			other_config:pmd-cpu-mask=$pmd other_config:pmd-maxsleep=100 other_config:dpdk-socket-mem=512 \
			other_config:dpdk-socket-limit=512 other_config:dpdk-hugepage-dir="$DIR/huge" \
			other_config:dpdk-extra="--no-pci --file-prefix=oldemo-ovs"
	else
		echo "demo: no 1 GiB of 2M hugepages to be had: OVS runs without DPDK (the vhost-user port will show why)"
	fi
fi
ovs ip netns exec "$NS" "$VSWITCHD" "unix:$DIR/ovs/db.sock" --pidfile="$DIR/ovs/ovs-vswitchd.pid" \
	--unixctl="$DIR/ovs/ovs-vswitchd.ctl" --log-file="$DIR/ovs/ovs-vswitchd.log" --detach --no-chdir -vconsole:off

# The external network: br-phys1's uplink is a veth to the "internet" namespace, which is
# also the external subnet's gateway (172.24.4.1).
ip netns add "$EXT"
ip link add ext-uplink netns "$NS" type veth peer name eth0 netns "$EXT"
ip -n "$NS" link set ext-uplink up
ip -n "$EXT" link set lo up
ip -n "$EXT" addr add 172.24.4.1/24 dev eth0
ip -n "$EXT" link set eth0 up
ip netns exec "$EXT" ethtool -K eth0 tx off >/dev/null

cat >"$DIR/node.yaml" <<EOF
ovsdb: unix:$DIR/ovs/db.sock
datapath: netdev
integration_bridge: br-int
physnets:
  physnet1: {bridge: br-phys1, interface: ext-uplink}
tunnel:
  local_ip: 192.0.2.10/24
  types: [vxlan]
vhostuser_socket_dir: $DIR/vhost
EOF
mkdir -p "$DIR/vhost"

say "starting offlane serve --agent (API $API, metrics $METRICS)"
"$BIN" serve --listen "$API" --data "$DIR/data" --agent --node-config "$DIR/node.yaml" --host "$HOST" \
	--ovs-netns "$NS" --plan-file "$DIR/node-plan.json" --metrics-listen "$METRICS" >"$DIR/offlane.log" 2>&1 9>&- &
echo $! >"$DIR/offlane.pid"
for _ in $(seq 100); do curl -sf "http://$METRICS/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "http://$METRICS/readyz" >/dev/null || { echo "demo: the agent did not become ready; log:"; tail -20 "$DIR/offlane.log"; exit 1; }

say "creating the topology through the API"
o() { "$BIN" "$@" >/dev/null; }
o network create public --external --provider-network-type flat --provider-physical-network physnet1 --os-project-id admin
o subnet create public-v4 --network public --subnet-range 172.24.4.0/24 --gateway 172.24.4.1 --no-dhcp --os-project-id admin
for p in a b; do
	export OFFLANE_PROJECT=proj-$p
	o network create $p-net
	o subnet create $p-sub --network $p-net --subnet-range 10.0.0.0/24
	vlan=$([ $p = a ] && echo 101 || echo 102)
	o network create $p-vlan --provider-network-type vlan --provider-physical-network physnet1 --provider-segment $vlan
	o subnet create $p-vlan-sub --network $p-vlan --subnet-range 10.$vlan.0.0/24
	o router create $p-router --external-gateway public
	o router add-interface $p-router --subnet $p-sub
	o security-group create $p-web
	o security-group-rule create $p-web --protocol icmp
	o security-group-rule create $p-web --protocol tcp --dst-port 5201
	o security-group-rule create $p-web --protocol udp --dst-port 5201
done
export OFFLANE_PROJECT=proj-a
o qos-policy create a-50M
o qos-policy rule create a-50M --type bandwidth-limit --max-kbps 50000 --max-burst-kbits 5000 --egress
o port create a-vm1 --network a-net --security-group a-web --host $HOST
o port create a-vm2 --network a-net --security-group a-web --host $HOST --qos-policy a-50M
o port create a-vm3 --network a-vlan --security-group a-web --host $HOST
o port create a-vm4 --network a-vlan --security-group a-web --host $HOST
o port create a-vnf --network a-net --security-group a-web --host $HOST --vnic-type vhost-user
o floatingip create public --port a-vm1
export OFFLANE_PROJECT=proj-b
o port create b-vm1 --network b-net --security-group b-web --host $HOST
o port create b-vm2 --network b-vlan --security-group b-web --host $HOST

say "plugging the VMs (offlane vif plug)"
for vm in "${VMS[@]}"; do
	OFFLANE_PROJECT=proj-${vm%%-*} "$BIN" vif plug --port "$vm" --netns "ol-demo-$vm" --ovsdb "unix:$DIR/ovs/db.sock" --ovs-netns "$NS" >/dev/null
done
ip_of() { OFFLANE_PROJECT=proj-${1%%-*} "$BIN" port show "$1" -c fixed_ips -o value | grep -oE '[0-9]+(\.[0-9]+){3}' | head -1; }
status_of() { OFFLANE_PROJECT=proj-${1%%-*} "$BIN" port show "$1" -c status -o value; }
for vm in "${VMS[@]}"; do
	for _ in $(seq 100); do [ "$(status_of "$vm")" = ACTIVE ] && break; sleep 0.2; done
done
FIP=$(OFFLANE_PROJECT=proj-a "$BIN" floatingip list -c floating_ip_address -o value | head -1)

say "connectivity (real traffic)"
pass=0 fail=0
check() { # check "description" expected(ok|fail) command...
	local what=$1 want=$2; shift 2
	if "$@" >/dev/null 2>&1; then got=ok; else got=fail; fi
	if [ "$got" = "$want" ]; then pass=$((pass + 1)); printf '  \033[32mPASS\033[0m %s\n' "$what"
	else fail=$((fail + 1)); printf '  \033[31mFAIL\033[0m %s (wanted %s)\n' "$what" "$want"; fi
}
pingc() { ip netns exec "$1" ping -c 3 -W 1 -i 0.2 "$2"; }
check "a-vm1 → a-vm2 on a-net (VXLAN network, same project)" ok pingc ol-demo-a-vm1 "$(ip_of a-vm2)"
check "a-vm3 → a-vm4 on a-vlan (VLAN 101)" ok pingc ol-demo-a-vm3 "$(ip_of a-vm4)"
check "b-vm1 → a-vm2's address: another project's network (isolation)" fail pingc ol-demo-b-vm1 "$(ip_of a-vm2)"
snat_src() { # the source address the external server sees for a ping from VM $1
	local f=$DIR/cap.$1
	ip netns exec "$EXT" timeout 5 tcpdump -n -l -c 1 -i eth0 'icmp[icmptype] = icmp-echo' >"$f" 2>/dev/null &
	local cap=$!
	sleep 0.5
	ip netns exec "ol-demo-$1" ping -c 2 -W 1 172.24.4.1 >/dev/null 2>&1
	wait $cap
	awk '{print $3}' "$f"
}
AGW=$(OFFLANE_PROJECT=proj-a "$BIN" router show a-router -c external_gateway_info -o value | grep -oE '172\.24\.4\.[0-9]+' | head -1)
seen=$(snat_src a-vm2)
check "a-vm2 → 172.24.4.1 (the external server) through a-router's SNAT: the server sees ${seen:-nothing}, a-router's address is $AGW" ok test "$seen" = "$AGW"
check "b-vm1 → 172.24.4.1 through b-router's SNAT (same 10.0.0.0/24 as project a)" ok pingc ol-demo-b-vm1 172.24.4.1
check "external server → floating IP $FIP (a-vm1)" ok pingc "$EXT" "$FIP"
rate=$(ip netns exec "$EXT" iperf3 -s -1 -p 5201 -D >/dev/null 2>&1; sleep 0.5
	ip netns exec ol-demo-a-vm2 iperf3 -u -b 200M -l 1400 -t 3 -c 172.24.4.1 -J 2>/dev/null |
	python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6,1))' 2>/dev/null || echo 0)
check "a-vm2 egress limited to 50 Mbit/s by QoS (iperf3 UDP at 200: received ${rate} Mbit/s)" ok \
	python3 -c "import sys; sys.exit(0 if 35 <= float('$rate') <= 57.5 else 1)"
if [ "$DPDK" = on ]; then
	# The VNF: dpdk-testpmd answering ARP and ping (icmpecho) on the vhost-user port, as
	# the vhost-user server the port's vif_details name (OVS is the client).
	sock=$(OFFLANE_PROJECT=proj-a "$BIN" port show a-vnf -c binding:vif_details -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["binding:vif_details"]["vhostuser_socket"])')
	mac=$(OFFLANE_PROJECT=proj-a "$BIN" port show a-vnf -c mac_address -o value)
	nice -n 10 dpdk-testpmd --lcores 0@0,1@0 -n 1 --no-pci --file-prefix=oldemo-vnf --huge-dir="$DIR/huge" -m 256 --in-memory \
		--single-file-segments --vdev "net_virtio_user0,path=$sock,server=1,queues=1,mac=$mac" -- \
		--total-num-mbufs=8192 --nb-cores=1 --auto-start --stats-period=3600 --forward-mode=icmpecho \
		>"$DIR/testpmd.log" 2>&1 9>&- &
	echo $! >"$DIR/testpmd.pid"
	for _ in $(seq 100); do [ "$(status_of a-vnf)" = ACTIVE ] && break; sleep 0.2; done
	check "a-vnf (vhost-user, OVS-DPDK) is ACTIVE once the VNF (dpdk-testpmd) connects" ok test "$(status_of a-vnf)" = ACTIVE
	check "a-vm1 → a-vnf: ping answered by dpdk-testpmd over vhost-user" ok pingc ol-demo-a-vm1 "$(ip_of a-vnf)"
	kill "$(cat "$DIR/testpmd.pid")" 2>/dev/null
	rm -f "$DIR/testpmd.pid"
fi

say "the plan: backend and reason per port and feature (offlane explain; add -v for its flows)"
for vm in a-vm1 a-vm2 a-vnf; do
	echo "  [$vm]"
	"$BIN" explain --port "$(OFFLANE_PROJECT=proj-a "$BIN" port show $vm -c id -o value)" --plan "$DIR/node-plan.json" --offline 2>/dev/null |
		sed -n '/^FEATURE/,/^$/p' | sed 's/^/    /'
done

say "report"
echo "  connectivity: $pass passed, $fail failed"
echo "  ports (name, status, binding:vif_type):"
"$BIN" port list -c name -c status -c binding:vif_type -o value | awk 'NF == 3 {printf "    %-7s %-7s %s\n", $1, $2, $3}'
echo "  API:      $OFFLANE_URL   (try: OFFLANE_URL=$OFFLANE_URL $BIN network list)"
echo "  metrics:  http://$METRICS/metrics  ($(curl -s "http://$METRICS/metrics" | grep -c '^offlane_') offlane_ series)"
echo "  logs:     $DIR/offlane.log, $DIR/ovs/"
if [ "${DEMO_EXIT:-}" = 1 ] || [ ! -t 0 ]; then
	[ "$fail" = 0 ]
	exit $?
fi
say "demo running: Ctrl-C (or 'make demo-down' elsewhere) removes it"
while kill -0 "$(cat "$DIR/offlane.pid")" 2>/dev/null; do sleep 1; done

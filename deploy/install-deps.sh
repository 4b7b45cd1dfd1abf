#!/usr/bin/env bash
# install-deps.sh: the one place that installs what offlane needs on a fresh Debian 12
# machine, as root. Idempotent and cheap when everything is present: `make demo`,
# `make test` and CI all call it.
#
#   deploy/install-deps.sh          apt packages (if any are missing) + Go modules
#   OFFLANE_SKIP_APT=1 ...          Go modules only (e.g. unprivileged developer machines)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, grouped by what needs them.
PKGS=(
  # detect: PCI ids database (ghw names devices), ethtool, iproute2 (ip, tc, devlink)
  pci.ids pciutils ethtool iproute2
  # OVS + OVS-DPDK (userspace datapath lab, ovsdb-server, ovs-ofctl for OpenFlow bundles)
  openvswitch-switch-dpdk openvswitch-common
  # DPDK testpmd as the vhost-user "VM"
  dpdk dpdk-dev
  # lab traffic and inspection
  iputils-ping iperf3 tcpdump nftables busybox
  # metrics: promtool (check metrics) and a real Prometheus server that scrapes the agent in a lab test
  prometheus
  # build
  make gcc git ca-certificates
  # kernel lab (test/kernellab): qemu; headers of Debian's current kernel, kmod (depmod,
  # modinfo), xz-utils and binutils to build netdevsim.ko out of tree; the kernel image
  # and linux-source .debs are fetched by the lab itself (apt-get download, cached)
  qemu-system-x86 linux-headers-amd64 kmod xz-utils binutils
)

missing=()
if [ "${OFFLANE_SKIP_APT:-0}" != 1 ]; then
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi

if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: run as root (or set OFFLANE_SKIP_APT=1 to install Go modules only)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No init system runs daemons here and tests start their own private OVS: keep the
  # packages' postinst scripts from starting a system-wide ovsdb-server/ovs-vswitchd.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go toolchain and modules (versions pinned in go.mod / go.sum).
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "install-deps: Go 1.26 not found in PATH or /usr/local/go/bin" >&2; exit 1; }
go mod download
echo "install-deps: ok"

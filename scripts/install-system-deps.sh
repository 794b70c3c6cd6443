#!/usr/bin/env bash
# Install the Debian packages the test suite and demo need, only when missing.
# pcscd + vsmartcard-vpcd: the real PC/SC stack the simulated cards sit behind.
# libpcsclite-dev + gcc: pyscard builds from its sdist.  postgresql: the server store's tests.
# systemd: systemd-analyze for the deployment units' test.  chromium (+ a Chinese font): the counter page's
# browser tests.
set -euo pipefail
need=()
[ -x /usr/sbin/pcscd ] || need+=(pcscd)
[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || need+=(vsmartcard-vpcd)
[ -e /usr/include/PCSC/winscard.h ] || need+=(libpcsclite-dev)
command -v gcc >/dev/null || need+=(gcc)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v systemd-analyze >/dev/null || need+=(systemd)   # tests/deploy verifies the systemd units
[ -x /usr/bin/chromium ] || need+=(chromium)   # tests/browser drive it with Playwright
fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-wqy-microhei)   # Chinese in the page's screenshots
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

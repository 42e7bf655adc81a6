#!/usr/bin/env bash
# Build the busybox-httpd container image from Debian's busybox-static package alone (no docker,
# no internet beyond the Debian mirror apt already uses). Writes two files into OUTDIR:
#   busybox-httpd.oci.tar     an OCI image layout (index.json, oci-layout, blobs/sha256/...)
#   busybox-httpd.docker.tar  the same image in `docker save` format (manifest.json, layer.tar)
# The build is reproducible: fixed mtimes, owners and entry order, so two runs give equal digests.
# Set BUSYBOX_DEB=path/to/busybox-static_*.deb to skip the download.
# Usage: images/busybox-httpd/build.sh OUTDIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1"
OUT="$(realpath "$1")"
NAME=busybox-httpd
umask 022
export LC_ALL=C
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. A statically linked busybox: the downloaded .deb, else the installed busybox-static package
#    (Debian's plain `busybox` package is dynamically linked and would not run in an empty rootfs).
deb="${BUSYBOX_DEB:-}"
if [ -z "$deb" ] && (cd "$WORK" && apt-get download -qq -o APT::Sandbox::User=root busybox-static) >/dev/null 2>&1; then
  deb="$(ls "$WORK"/busybox-static_*.deb)"
fi
if [ -n "$deb" ]; then
  dpkg-deb -x "$deb" "$WORK/deb"
  BB="$WORK/deb/bin/busybox"
  BB_VERSION="$(dpkg-deb -f "$deb" Version)"
elif dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
  BB=/bin/busybox
  BB_VERSION="$(dpkg-query -W -f='${Version}' busybox-static)"
else
  echo "$0: cannot get busybox-static (apt-get download failed and it is not installed)" >&2
  exit 1
fi

# 2. The root filesystem.
R="$WORK/rootfs"
mkdir -p "$R"/{bin,etc,proc,sys,dev,root,www,usr/bin,usr/sbin,sbin,var/run}
mkdir -m 1777 "$R/tmp"   # sticky, world-writable (mkdir -m ignores the umask)
chmod 0700 "$R/root"
install -m 0755 "$BB" "$R/bin/busybox"
# Every applet this busybox has, as a relative symlink in /bin (sh, httpd, wget, dd, head, tr, ...).
applets="$("$R/bin/busybox" --list)"
for a in $applets; do
  [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
done
for a in sh httpd cat echo ls sleep wget id ps mount hostname ip ifconfig head tail dd sed grep \
         env true false kill nc uname mkdir rm tr yes cut wc awk; do
  [ -L "$R/bin/$a" ] || { echo "$0: busybox lacks applet $a" >&2; exit 1; }
done
ln -s ../../bin/env "$R/usr/bin/env"   # for `#!/usr/bin/env sh` scripts
printf 'hello from cloudlet busybox-httpd\n' > "$R/www/index.html"
cat > "$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$R/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nobody:x:65534:
EOF
# Empty mount targets the runtime bind-mounts over.
: > "$R/etc/hostname"; : > "$R/etc/hosts"; : > "$R/etc/resolv.conf"
chmod 0644 "$R"/etc/*

# 3. The layer: a deterministic tar (sorted, mtime 0, owner 0), then gzip without name/time.
TARFLAGS=(--format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner)
mkdir -p "$WORK/blobs"
(cd "$R" && tar "${TARFLAGS[@]}" -cf "$WORK/layer.tar" -- *)   # LC_ALL=C: the glob is byte-sorted
gzip -n -9 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"

# 4. Config, manifest, index and the two output layouts (python3 stdlib for JSON and sha256).
python3 - "$WORK" "$NAME" "$BB_VERSION" <<'PY'
import hashlib, json, os, shutil, sys
work, name, bb_version = sys.argv[1:]
def dump(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
def sha(data):
    return hashlib.sha256(data).hexdigest()
def blob(data):  # store in the OCI layout, return a descriptor body
    h = sha(data)
    os.makedirs(f"{work}/oci/blobs/sha256", exist_ok=True)
    with open(f"{work}/oci/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}
layer_tar = open(f"{work}/layer.tar", "rb").read()
layer_gz = open(f"{work}/layer.tar.gz", "rb").read()
diff_id = sha(layer_tar)
config = dump({
    "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
    "config": {
        "Entrypoint": ["/bin/httpd"], "Cmd": ["-f", "-v", "-p", "8080", "-h", "/www"],
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "WorkingDir": "/",
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.opencontainers.image.title": name,
                   "cloudlet.busybox-static.version": bb_version},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    "history": [{"created": "1970-01-01T00:00:00Z",
                 "created_by": f"images/{name}/build.sh (busybox-static {bb_version})"}],
})
manifest = dump({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layer_gz)}],
})
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
                        "platform": {"architecture": "amd64", "os": "linux"},
                        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
open(f"{work}/oci/index.json", "wb").write(dump(index))
open(f"{work}/oci/oci-layout", "wb").write(dump({"imageLayoutVersion": "1.0.0"}))
# docker save: <config hex>.json, <diff_id hex>/layer.tar (uncompressed), manifest.json.
d = f"{work}/docker"
os.makedirs(f"{d}/{diff_id}")
open(f"{d}/{sha(config)}.json", "wb").write(config)
shutil.copyfile(f"{work}/layer.tar", f"{d}/{diff_id}/layer.tar")
open(f"{d}/manifest.json", "wb").write(dump([{
    "Config": f"{sha(config)}.json", "RepoTags": [f"{name}:latest"],
    "Layers": [f"{diff_id}/layer.tar"]}]))
open(f"{d}/repositories", "wb").write(dump({name: {"latest": diff_id}}))
print(f"manifest sha256:{sha(manifest)}\nconfig   sha256:{sha(config)}\n"
      f"layer    sha256:{sha(layer_gz)} (diff_id sha256:{diff_id})")
PY
for kind in oci docker; do
  (cd "$WORK/$kind" && tar "${TARFLAGS[@]}" -cf "$OUT/$NAME.$kind.tar" -- *)   # LC_ALL=C: the glob is byte-sorted
done
echo "busybox-static $BB_VERSION -> $OUT/$NAME.oci.tar, $OUT/$NAME.docker.tar"

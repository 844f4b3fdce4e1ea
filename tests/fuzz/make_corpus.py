#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/<name>.

Every seed is made here from nothing (no blob from outside): small, valid inputs of each
format, plus the odd cases each parser must refuse. Run it again after changing it; the files
it writes are checked in (the fuzz targets and their replay tests read them). Files in a
corpus directory that this script does not make (inputs that once found a bug, named
crash-*, regression-*) are left alone.

    python3 tests/fuzz/make_corpus.py [CORPUS_DIR]

zstd seeds need the zstd program (scripts/deps.sh installs it).
"""

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
ZERO = "sha256:" + "0" * 64
ONE = "sha256:" + "1" * 64


def write(root, target, name, data):
    directory = os.path.join(root, target)
    os.makedirs(directory, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# ---- server.yaml --------------------------------------------------------------------------

CONFIGS = {
    "empty": "",
    "comment": "# nothing set\n",
    "every_key": """name: lab-1
http_port: 9090
ssh_port: 2200
bind: 0.0.0.0
default_backend: container
data_dir: /srv/shed
images_dir: /srv/images
instance_dir: /srv/instances
base_image: ghcr.io/o/base:v3
images:
  big: 127.0.0.1:5000/big:latest
  local: /opt/images/local.ext4
rootfs_size: 8G
platform: linux/arm64/v8
default_cpus: 4
default_memory_mb: 8192
insecure_registries: [registry.lan:5000, 10.0.0.2]
api_token: s3cret
allow_unauthenticated: false
unix_socket: /run/shed/api.sock
unix_socket_mode: "0660"
unix_socket_group: shed
container_network:
  mode: bridge
  bridge: shed0
  subnet: 10.88.0.0/24
http_max_connections: 256
http_max_connections_per_client: 32
http_request_timeout_seconds: 10
http_idle_timeout_seconds: 30
tunnel_idle_timeout_seconds: 300
tunnel_max_per_client: 8
repo_schemes: [https, ssh, file]
repo_allow_hosts: [git.lan, "10.0.0.5:8443"]
repo_user: nobody
repo_ssh_key: ~/.ssh/deploy
repo_ssh_known_hosts: /etc/shed/known_hosts
repo_timeout_seconds: 120
repo_low_speed_limit: 2000
repo_low_speed_time: 20
pull_timeout_seconds: 600
pull_low_speed_limit: 4096
pull_low_speed_time: 30
pull_min_progress: 256K
max_layer_bytes: 4G
max_image_bytes: 16GiB
""",
    "nulls": "base_image: ~\napi_token: null\nimages:\ninsecure_registries:\nunix_socket:\n",
    "flow_style": '{name: "x", http_port: 80, images: {a: "r/a:1"}, repo_schemes: [https]}\n',
    "anchors": "x: &a 1\nhttp_port: *a\n",
    "two_documents": "name: a\n---\nname: b\n",
    "bad_port": "http_port: 0\n",
    "bad_mode": "unix_socket_mode: 0999\n",
    "bad_limits": "http_max_connections: 10\nhttp_max_connections_per_client: 20\n",
    "bad_scheme": "repo_schemes: [ext]\n",
    "root_git": "repo_user: root\n",
    "quoted": 'name: "tab\\there"\nbase_image: \'/x y\'\n',
    "sizes": "rootfs_size: 1.5G\nmax_layer_bytes: 0x40000000\npull_min_progress: 1\n",
    "nested_error": "container_network:\n  mode: bridge\n  subnet: 10.88.0.1/24\n",
}


# ---- manifests and indexes (first byte: the Content-Type the target claims) ---------------

def descriptor(media_type, digest, size, **extra):
    d = {"mediaType": media_type, "digest": digest, "size": size}
    d.update(extra)
    return d


def manifests():
    oci_manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", ZERO, 2),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", ONE, 100),
                   descriptor("application/vnd.oci.image.layer.v1.tar+zstd", ZERO, 7),
                   descriptor("application/vnd.oci.image.layer.v1.tar", ONE, 0)],
    }
    docker_manifest = dict(oci_manifest)
    docker_manifest["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    docker_manifest["layers"] = [
        descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", ONE, 1 << 40),
        descriptor("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", ZERO, 5)]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            descriptor("application/vnd.oci.image.manifest.v1+json", ZERO, 500,
                       platform={"os": "linux", "architecture": "amd64"}),
            descriptor("application/vnd.oci.image.manifest.v1+json", ONE, 500,
                       platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
            descriptor("application/vnd.oci.image.manifest.v1+json", ONE, 500,
                       platform={"os": "unknown", "architecture": "unknown"}),
        ],
    }
    docker_list = dict(index)
    docker_list["mediaType"] = "application/vnd.docker.distribution.manifest.list.v2+json"
    return {
        "oci_manifest": b"\x01" + json.dumps(oci_manifest).encode(),
        "docker_manifest": b"\x03" + json.dumps(docker_manifest).encode(),
        "oci_index": b"\x02" + json.dumps(index).encode(),
        "docker_list": b"\x04" + json.dumps(docker_list).encode(),
        "untyped_manifest": b"\x00" + json.dumps({"schemaVersion": 2, "config": oci_manifest[
            "config"], "layers": []}).encode(),
        "schema1": b"\x05" + json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(),
        "bad_digest": b"\x01" + json.dumps(dict(oci_manifest, config=descriptor(
            "x", "sha256:../../etc", 1))).encode(),
        "negative_size": b"\x01" + json.dumps(dict(oci_manifest, layers=[descriptor(
            "application/vnd.oci.image.layer.v1.tar", ONE, -1)])).encode(),
        "duplicate_keys": b'\x01{"schemaVersion":2,"schemaVersion":2,"layers":[]}',
        "not_json": b"\x06<html>rate limited</html>",
    }


# ---- WWW-Authenticate ----------------------------------------------------------------------

CHALLENGES = {
    "docker_hub": 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                  'scope="repository:library/debian:pull"',
    "ghcr": 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/i:pull"',
    "basic": 'Basic realm="Registry Realm"',
    "escaped": 'Bearer realm="https://a/t\\"x\\\\",service=plain,scope=""',
    "no_realm": 'Bearer service="x"',
    "unterminated": 'Bearer realm="https://a/t',
    "spaces_commas": '  bearer   ,,realm = "x" , , service=y,,',
    "unknown_scheme": 'Negotiate abc',
    "empty": "",
}


# ---- router requests -----------------------------------------------------------------------

def request(line, headers=(), body=""):
    return line + "\n" + "".join(h + "\n" for h in headers) + "\n" + body


REQUESTS = {
    "info": request("GET /api/info"),
    "list": request("GET /api/sheds"),
    "create": request("POST /api/sheds", ["Content-Type: application/json"],
                      json.dumps({"name": "box", "image": "base", "repo": "o/r",
                                  "cpus": 2, "memory_mb": 1024})),
    "create_sse": request("POST /api/sheds", ["Accept: text/event-stream"],
                          json.dumps({"name": "box", "backend": "container"})),
    "create_bad_repo": request("POST /api/sheds", [],
                               json.dumps({"name": "box", "repo": "http://127.0.0.1:1/x"})),
    "create_unknown_field": request("POST /api/sheds", [], '{"name":"x","evil":1}'),
    "create_bad_json": request("POST /api/sheds", [], '{"name":'),
    "get": request("GET /api/sheds/box"),
    "nul_in_name": request("GET /api/sheds/a%00x"),
    "slash_in_name": request("DELETE /api/sheds/a%2Fb"),
    "dots": request("GET /api/sheds/%2e%2e/start"),
    "delete": request("DELETE /api/sheds/box"),
    "start": request("POST /api/sheds/box/start"),
    "stop_with_body": request("POST /api/sheds/box/stop", [], "{}"),
    "sessions": request("GET /api/sheds/box/sessions"),
    "session_delete": request("DELETE /api/sheds/box/sessions/main"),
    "all_sessions": request("GET /api/sessions"),
    "connect": request("GET /api/sheds/box/connect/8080", ["Connection: Upgrade",
                                                           "Upgrade: shed-tcp"]),
    "images": request("GET /api/images"),
    "image_delete": request("DELETE /api/images/base"),
    "images_prune": request("POST /api/images/prune?dry_run=1"),
    "system_df": request("GET /api/system/df"),
    "system_prune": request("POST /api/system/prune?dry_run=true&until=1h", [], "{}"),
    "host_key": request("GET /api/ssh-host-key"),
    "method_not_allowed": request("PATCH /api/sheds"),
    "no_route": request("GET /api/nothing%41"),
}


# ---- layers --------------------------------------------------------------------------------

SEPARATOR = b"--shed-layer--"


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    """The archive with its two end blocks but not tarfile's padding to 10 KiB (the last
    entry's data must not end in zeros, or they would go too)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    content = buf.getvalue().rstrip(b"\0")
    blocks = (len(content) + 511) // 512
    return content.ljust(blocks * 512 + 1024, b"\0")


def entry(name, kind=tarfile.REGTYPE, data=b"", **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data if kind == tarfile.REGTYPE else None


def base_layer():
    return tar_bytes([
        entry("etc/", tarfile.DIRTYPE, mode=0o755),
        entry("etc/hostname", data=b"shed\n", mode=0o644),
        entry("usr/bin/", tarfile.DIRTYPE),
        entry("usr/bin/tool", data=b"#!/bin/sh\necho hi\n", mode=0o4755, uid=0, gid=0),
        entry("usr/bin/alias", tarfile.SYMTYPE, linkname="tool"),
        entry("usr/bin/hard", tarfile.LNKTYPE, linkname="usr/bin/tool"),
        entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        entry("run/fifo", tarfile.FIFOTYPE),
        entry("opt/dir/", tarfile.DIRTYPE),
        entry("opt/dir/old", data=b"old"),
    ])


def upper_layer():
    return tar_bytes([
        entry("etc/.wh.hostname"),
        entry("opt/dir/", tarfile.DIRTYPE),
        entry("opt/dir/.wh..wh..opq"),
        entry("opt/dir/new", data=b"new"),
        entry("./usr//bin/../bin/again", data=b"x"),
    ])


def odd_layer():
    long_name = "deep/" + "d" * 120 + "/" + "f" * 120
    xattrs = entry("xattr", data=b"x")
    xattrs[0].pax_headers = {"SCHILY.xattr.user.note": "hello",
                             "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
    return tar_bytes([
        entry("zeros", data=b"\0" * 4096),
        entry(long_name, data=b"long"),
        xattrs,
        entry("/", tarfile.DIRTYPE),
        entry("a/b/../../c", data=b"resolved inside the root"),
    ])


def zstd(data):
    if shutil.which("zstd") is None:
        sys.exit("make_corpus.py: the zstd program is needed (scripts/deps.sh)")
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True,
                          check=True).stdout


def layers():
    base, upper = base_layer(), upper_layer()
    return {
        "plain_tar": base,
        "gzip_tar": gzip.compress(base, mtime=0),
        "zstd_tar": zstd(base),
        "two_layers_whiteouts": base + SEPARATOR + upper,
        "gzip_over_zstd": gzip.compress(base, mtime=0) + SEPARATOR + zstd(upper),
        "odd_names_xattrs": odd_layer(),
        "gnu_format": tar_bytes([entry("g/" + "n" * 150, data=b"gnu")], tarfile.GNU_FORMAT),
        "truncated_gzip": gzip.compress(base, mtime=0)[:200],
        "dotdot_escape": tar_bytes([entry("../escape", data=b"refused")]),
        "empty": b"",
    }


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(HERE, "corpus")
    for name, text in CONFIGS.items():
        write(root, "config", name + ".yaml", text)
    for name, data in manifests().items():
        write(root, "manifest", name, data)
    for name, text in CHALLENGES.items():
        write(root, "www_authenticate", name, text)
    for name, text in REQUESTS.items():
        write(root, "router", name, text)
    for name, data in layers().items():
        write(root, "layer", name, data)
    print("seed corpora written to %s" % root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

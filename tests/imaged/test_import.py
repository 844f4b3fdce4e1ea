"""`shed-server import`: an image pushed to a loopback registry, copied out with the real tools
(skopeo to docker-archive, oci-archive and an oci layout directory; GNU tar of its extracted
root filesystem), imported under a variant name, and compared entry for entry (treecmp.py over
ext4_list) with `shed-server convert` of the same image from the registry. Then what a user
does with the result (images ls, a create, prune, rm) and what a hostile archive gets (one
line, nothing stored).

Environment: SHED_SERVER, SHED_EXT4_LIST, SHED_BUILD_CACHE, SHED_FIXTURES.
"""

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("SHED_FIXTURES", os.path.join(HERE, "..", "fixtures")))
sys.path.insert(0, HERE)

import ctrtest  # noqa: E402
import debian_image  # noqa: E402
import reference  # noqa: E402
import shedserver  # noqa: E402
import shedtest  # noqa: E402
import testrun  # noqa: E402
import treecmp  # noqa: E402

SHED_SERVER = os.environ.get("SHED_SERVER", "shed-server")
EXT4_LIST = os.environ.get("SHED_EXT4_LIST", "ext4_list")
BUILD_CACHE = os.environ.get("SHED_BUILD_CACHE", os.path.join(HERE, "..", "..", "build-cache"))
IS_ROOT = os.geteuid() == 0
SIZE = "256M"


def layer(build):
    b = shedtest.LayerBuilder()
    build(b)
    return b.tar_bytes()


def edge_case_layers():
    """Three layers (gzip, plain, gzip: docker archives cannot hold zstd) with what conversions get wrong: whiteouts, an opaque
    directory, hardlinks, symlinks, devices, setuid, xattrs (a capability included)."""
    base = layer(lambda b: b.dir("etc").file("etc/hostname", "imported\n")
                 .dir("bin").file("bin/tool", os.urandom(20000), mode=0o4755)
                 .hardlink("bin/tool-again", "bin/tool").symlink("bin/sh", "tool")
                 .dir("dev").device("dev/null", "char", 1, 3).fifo("dev/pipe")
                 .dir("var").dir("var/cache").file("var/cache/old", "old")
                 .dir("opt").file("opt/gone", "gone")
                 .file("caps", "c", pax_headers={"SCHILY.xattr.security.capability":
                                                 "\x01\x00\x00\x02" + "\x00" * 16,
                                                 "SCHILY.xattr.user.note": "kept"}))
    middle = layer(lambda b: b.dir("var").dir("var/cache").opaque("var/cache")
                   .file("var/cache/new", "new").whiteout("opt/gone")
                   .dir("etc").file("etc/motd", "second layer\n", uid=1000, gid=1000))
    top = layer(lambda b: b.dir("home").dir("home/user", uid=1000, gid=1000, mode=0o700)
                .file("home/user/.profile", "export A=1\n", uid=1000, gid=1000))
    return [(base, "gzip"), (middle, "none"), (top, "gzip")]


def run_server(*args, timeout=900):
    return subprocess.run([SHED_SERVER] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def skopeo_copy(ref, destination):
    result = subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                             "docker://" + ref, destination], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise RuntimeError("skopeo copy %s %s: %s" % (ref, destination, result.stderr))


def rootfs_tarball(layer_files, work, out):
    """The image's root filesystem as `docker export` would give it: the layers extracted in
    order as root (reference.py), then one GNU tar of the tree."""
    tree = os.path.join(work, "rootfs-tree")
    reference.extract_layers(layer_files, tree)
    subprocess.run(["tar", "--format=posix", "--numeric-owner", "--xattrs",
                    "--xattrs-include=*", "-C", tree, "-cf", out, "."], check=True)
    shutil.rmtree(tree)


class ImportTestCase(unittest.TestCase):
    """One registry per class; a data dir and server.yaml per test."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("skopeo") is None:
            raise unittest.SkipTest("skopeo is not installed")
        cls.work_class = tempfile.mkdtemp(prefix="shed-import-")
        cls.registry = shedtest.Registry(workdir=os.path.join(cls.work_class, "registry")).start()
        cls.pusher = shedtest.Pusher(cls.registry.url)

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()
        shutil.rmtree(cls.work_class, ignore_errors=True)

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="shed-import-test-", dir=self.work_class)
        self.data_dir = os.path.join(self.work, "data")
        self.images_dir = os.path.join(self.data_dir, "images")
        self.config = os.path.join(self.work, "server.yaml")
        self.write_config()

    def write_config(self, extra=""):
        with open(self.config, "w") as f:
            f.write("data_dir: %s\nrootfs_size: %s\nbase_image: null\n%s"
                    % (self.data_dir, SIZE, extra))

    def import_image(self, path, name, *extra):
        return run_server("import", "--config", self.config, path, "--name", name, *extra)

    def import_ok(self, path, name, *extra):
        result = self.import_image(path, name, "--json", *extra)
        self.assertEqual(result.returncode, 0, "import failed: %s" % result.stderr)
        return json.loads(result.stdout)

    def assert_one_line_error(self, result, *fragments):
        self.assertNotEqual(result.returncode, 0, "import unexpectedly succeeded")
        lines = result.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("shed-server: ")]
        self.assertEqual(len(errors), 1, result.stderr)
        for fragment in fragments:
            self.assertIn(fragment, errors[0])
        return errors[0]

    def converted_from_registry(self, ref):
        out = os.path.join(self.work, "from-registry.ext4")
        result = run_server("convert", ref, "-o", out, "--size", SIZE, "--data-dir",
                            os.path.join(self.work, "convert-data"))
        self.assertEqual(result.returncode, 0, result.stderr)
        return treecmp.list_image(out, EXT4_LIST)

    def variant_path(self, name):
        return os.path.join(self.images_dir, name + "-rootfs.ext4")

    def assert_same_as_registry(self, expected, name):
        image = self.variant_path(name)
        fsck = subprocess.run(["e2fsck", "-fn", image], capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout)
        diffs = treecmp.compare(expected, treecmp.list_image(image, EXT4_LIST), root_mtime=True)
        self.assertEqual(diffs, [], "imported %s differs from the registry's conversion:\n%s"
                         % (name, "\n".join(diffs)))

    def source_record(self, name):
        with open(self.variant_path(name) + ".source") as f:
            return json.load(f)

    def store_blobs(self):
        root = os.path.join(self.images_dir, "blobs", "sha256")
        return sorted(os.listdir(root)) if os.path.isdir(root) else []


class EveryKindTest(ImportTestCase):
    """The edge-case image through each kind of file, against the registry's conversion."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.layers = edge_case_layers()
        cls.digest, _, _ = shedtest.push_image(cls.pusher, "import/edge", "v1", cls.layers)
        cls.ref = "%s/import/edge:v1" % cls.registry.host
        files = os.path.join(cls.work_class, "files")
        os.makedirs(files)
        cls.docker_archive = os.path.join(files, "edge-docker.tar")
        cls.oci_archive = os.path.join(files, "edge-oci.tar")
        cls.oci_dir = os.path.join(files, "edge-oci-dir")
        skopeo_copy(cls.ref, "docker-archive:%s:import/edge:v1" % cls.docker_archive)
        skopeo_copy(cls.ref, "oci-archive:%s" % cls.oci_archive)
        skopeo_copy(cls.ref, "oci:%s" % cls.oci_dir)

    def setUp(self):
        super().setUp()
        if not hasattr(type(self), "expected"):
            type(self).expected = self.converted_from_registry(self.ref)

    def test_docker_archive_matches_the_registry_conversion(self):
        out = self.import_ok(self.docker_archive, "from-docker")
        self.assertEqual(out["kind"], "docker-archive")
        self.assertEqual(out["layers"], 3)
        self.assert_same_as_registry(self.expected, "from-docker")
        record = self.source_record("from-docker")
        self.assertTrue(record["imported"])
        self.assertEqual(record["ref"], "docker-archive:" + self.docker_archive)
        self.assertEqual(record["digest"], out["digest"])

    def test_gzipped_docker_archive_matches_too(self):
        gz = os.path.join(self.work, "edge-docker.tar.gz")
        with open(self.docker_archive, "rb") as src, gzip.open(gz, "wb") as dst:
            shutil.copyfileobj(src, dst)
        self.assertEqual(self.import_ok(gz, "from-gz")["kind"], "docker-archive")
        self.assert_same_as_registry(self.expected, "from-gz")

    def test_oci_archive_matches_the_registry_conversion(self):
        out = self.import_ok(self.oci_archive, "from-oci-archive")
        self.assertEqual(out["kind"], "oci-archive")
        self.assert_same_as_registry(self.expected, "from-oci-archive")

    def test_oci_layout_directory_matches_the_registry_conversion(self):
        out = self.import_ok(self.oci_dir, "from-oci-dir")
        self.assertEqual(out["kind"], "oci")
        self.assert_same_as_registry(self.expected, "from-oci-dir")
        # Every blob of the image is in the store under its verified digest.
        with open(os.path.join(self.oci_dir, "index.json")) as f:
            manifest_digest = json.load(f)["manifests"][0]["digest"]
        self.assertEqual(out["digest"], manifest_digest)
        for name in os.listdir(os.path.join(self.oci_dir, "blobs", "sha256")):
            self.assertIn(name, self.store_blobs())

    def test_rootfs_tarball_matches_the_registry_conversion(self):
        if not IS_ROOT:
            self.skipTest("needs root: the rootfs is extracted with owners, devices, xattrs")
        paths = []
        for i, (tar_bytes, _) in enumerate(self.layers):
            paths.append(os.path.join(self.work, "layer%d.tar" % i))
            with open(paths[-1], "wb") as f:
                f.write(tar_bytes)
        tarball = os.path.join(self.work, "rootfs.tar")
        rootfs_tarball(paths, self.work, tarball)
        out = self.import_ok(tarball, "from-tarball")
        self.assertEqual((out["kind"], out["layers"]), ("tarball", 1))
        # An extraction directory's own mtime is not the image's: the root is compared
        # without it, and so is lost+found, which the writer stamps with the root's time.
        expected = {path: entry for path, entry in self.expected.items()
                    if path != b"lost+found" and not path.startswith(b"lost+found/")}
        diffs = treecmp.compare(expected,
                                treecmp.list_image(self.variant_path("from-tarball"), EXT4_LIST))
        self.assertEqual(diffs, [], "\n".join(diffs))

    def test_a_zstd_rootfs_tarball_imports(self):
        tarball = os.path.join(self.work, "rootfs.tar.zst")
        with open(tarball, "wb") as f:
            f.write(shedtest.compress(layer(lambda b: b.dir("etc").file("etc/os", "zstd\n")),
                                      "zstd"))
        self.assertEqual(self.import_ok(tarball, "zst")["kind"], "tarball")
        tree = treecmp.list_image(self.variant_path("zst"), EXT4_LIST)
        self.assertEqual(tree[b"etc/os"].size, 5)

    def test_the_same_image_twice_is_converted_once(self):
        first = self.import_ok(self.oci_archive, "first")
        second = self.import_ok(self.oci_dir, "second")
        self.assertTrue(first["converted"])
        self.assertFalse(second["converted"], "same manifest digest: linked, not converted")
        self.assertEqual(os.stat(self.variant_path("first")).st_ino,
                         os.stat(self.variant_path("second")).st_ino)
        self.assertEqual(second["bytes_imported"], 0, "every blob was in the store already")

    def test_the_imported_variant_is_listed_kept_by_prune_and_removable(self):
        out = self.import_ok(self.docker_archive, "mine")
        listed = json.loads(run_server("images", "ls", "--json", "--config", self.config).stdout)
        entry = [i for i in listed["images"] if i["name"] == "mine"][0]
        self.assertEqual(entry["source"], "imported")
        self.assertEqual(entry["digest"], out["digest"])
        self.assertEqual(entry["docker_ref"], "docker-archive:" + self.docker_archive)
        pruned = run_server("images", "prune", "--json", "--config", self.config)
        self.assertEqual(json.loads(pruned.stdout)["deleted"], [], pruned.stderr)
        self.assertTrue(os.path.exists(self.variant_path("mine")))
        removed = run_server("images", "rm", "mine", "--config", self.config)
        self.assertEqual(removed.returncode, 0, removed.stderr)
        self.assertFalse(os.path.exists(self.variant_path("mine")))

    def test_a_name_of_server_yaml_is_refused(self):
        self.write_config("images:\n  dev: %s\n" % self.ref)
        self.assert_one_line_error(self.import_image(self.oci_archive, "dev"), "IMAGE_IN_USE",
                                   "images.dev")
        self.assert_one_line_error(self.import_image(self.oci_archive, "_base"), "invalid image")

    def test_a_format_that_does_not_match_is_refused(self):
        self.assert_one_line_error(self.import_image(self.oci_dir, "x", "--format",
                                                     "docker-archive"), "is a directory")


class ImportedShedTest(ImportTestCase):
    """The offline path end to end: import, then a create names the variant (container
    backend: root, runc, loop devices)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ref = "%s/import/edge:v1" % cls.registry.host
        shedtest.push_image(cls.pusher, "import/edge", "v1", edge_case_layers())
        cls.oci_archive = os.path.join(cls.work_class, "edge-oci.tar")
        skopeo_copy(ref, "oci-archive:%s" % cls.oci_archive)

    def test_created_shed_runs_from_the_imported_image(self):
        reason = shedserver.container_skip_reason()
        if reason is not None:
            self.skipTest(reason)
        self.import_ok(self.oci_archive, "offline")
        server = shedserver.ServerProcess(SHED_SERVER, self.data_dir, open(self.config).read(),
                                          stop_timeout=120).start()
        try:
            status, images = server.request("GET", "/api/images")
            self.assertIn({"offline": "imported"},
                          [{i["name"]: i["source"]} for i in images["images"]])
            status, shed = server.request("POST", "/api/sheds",
                                          {"name": "first", "image": "offline"})
            self.assertEqual(status, 201, shed)
            self.assertEqual((shed["status"], shed["image"]), ("running", "offline"))
            status, _ = server.request("DELETE", "/api/sheds/first")
            self.assertEqual(status, 204)
        finally:
            server.stop()
            shedserver.force_cleanup(self.data_dir)


class HostileInputTest(ImportTestCase):
    """Whatever the archive says, nothing lands outside the store and nothing unverified is
    used: one line, no variant, no blob of the bad content."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ref = "%s/import/small:v1" % cls.registry.host
        shedtest.push_image(cls.pusher, "import/small", "v1",
                            [(layer(lambda b: b.file("a", os.urandom(5000))), "gzip")])

    def tar_of(self, members):
        """A tar from [(name, bytes)] or [(name, ("symlink", target))]."""
        path = os.path.join(self.work, "crafted.tar")
        with tarfile.open(path, "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                if isinstance(data, tuple):
                    info.type, info.linkname = tarfile.SYMTYPE, data[1]
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return path

    def assert_nothing_imported(self, name):
        self.assertFalse(os.path.exists(self.variant_path(name)))
        self.assertFalse([b for b in self.store_blobs() if b.endswith(".tmp")])

    def test_a_member_name_with_dotdot_refuses_the_archive(self):
        path = self.tar_of([("manifest.json", b"[]"), ("../escape", b"x")])
        self.assert_one_line_error(self.import_image(path, "bad"), "INVALID_IMAGE", "..")
        self.assertFalse(os.path.exists(os.path.join(self.work, "escape")))
        self.assert_nothing_imported("bad")

    def test_an_absolute_member_name_refuses_the_archive(self):
        path = self.tar_of([("/etc/evil", b"x")])
        self.assert_one_line_error(self.import_image(path, "bad"), "absolute name")

    def test_a_config_named_outside_the_archive_is_refused(self):
        manifest = json.dumps([{"Config": "../../etc/passwd", "Layers": []}]).encode()
        path = self.tar_of([("manifest.json", manifest)])
        self.assert_one_line_error(self.import_image(path, "bad"), "INVALID_IMAGE")
        self.assert_nothing_imported("bad")

    def test_a_symlink_member_pointing_outside_is_not_followed(self):
        manifest = json.dumps([{"Config": "c.json", "Layers": []}]).encode()
        path = self.tar_of([("manifest.json", manifest), ("c.json", ("symlink", "/etc/passwd"))])
        self.assert_one_line_error(self.import_image(path, "bad"), "no member c.json")
        self.assert_nothing_imported("bad")

    def test_a_symlink_in_a_layout_directory_is_not_followed(self):
        layout = os.path.join(self.work, "layout")
        skopeo_copy(self.ref, "oci:" + layout)
        os.unlink(os.path.join(layout, "index.json"))
        secret = os.path.join(self.work, "secret.json")
        with open(secret, "w") as f:
            f.write('{"schemaVersion": 2, "manifests": []}')
        os.symlink(secret, os.path.join(layout, "index.json"))
        self.assert_one_line_error(self.import_image(layout, "bad"), "not followed")
        self.assert_nothing_imported("bad")

    def test_a_corrupt_layer_is_not_stored(self):
        layout = os.path.join(self.work, "layout")
        skopeo_copy(self.ref, "oci:" + layout)
        blobs = os.path.join(layout, "blobs", "sha256")
        layer_blob = max(os.listdir(blobs), key=lambda n: os.path.getsize(os.path.join(blobs, n)))
        with open(os.path.join(blobs, layer_blob), "r+b") as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0xff]))
        self.assert_one_line_error(self.import_image(layout, "bad"), "INTEGRITY", layer_blob)
        self.assert_nothing_imported("bad")
        self.assertNotIn(layer_blob, self.store_blobs())

    def test_a_docker_layer_that_does_not_match_its_diff_id_is_refused(self):
        archive = os.path.join(self.work, "small.tar")
        skopeo_copy(self.ref, "docker-archive:%s:import/small:v1" % archive)
        with tarfile.open(archive) as tar:
            members = [(m.name, tar.extractfile(m).read() if m.isfile() else ("symlink",
                                                                               m.linkname))
                       for m in tar.getmembers() if m.isfile() or m.issym()]
        with open(os.path.join(self.work, "manifest.json"), "w"):
            pass
        manifest = json.loads(dict(members)["manifest.json"])
        layer_name = manifest[0]["Layers"][0]
        forged = layer(lambda b: b.file("a", "forged"))
        members = [(n, forged if n == layer_name else d) for n, d in members]
        path = self.tar_of(members)
        self.assert_one_line_error(self.import_image(path, "bad"), "INTEGRITY",
                                   "where the config says")
        self.assertFalse(os.path.exists(self.variant_path("bad")))

    def test_several_images_in_one_archive_are_refused_by_name(self):
        manifest = json.dumps([{"Config": "a.json", "RepoTags": ["a:1"], "Layers": []},
                               {"Config": "b.json", "RepoTags": ["b:2"], "Layers": []}]).encode()
        path = self.tar_of([("manifest.json", manifest)])
        self.assert_one_line_error(self.import_image(path, "bad"), "2 images (a:1, b:2)")


class DebianImageTest(ImportTestCase):
    """The realistic fixture (Debian minbase, three gzip layers with whiteouts and an opaque
    directory) through a docker-archive and an oci-archive."""

    def test_debian_archives_match_the_registry_conversion(self):
        try:
            gz_layers = debian_image.ensure_layers(BUILD_CACHE)
        except debian_image.Unavailable as e:
            self.skipTest("Debian image unavailable: %s" % e)
        ctrtest.push_gz_layers(self.pusher, "import/debian", "v1", gz_layers)
        ref = "%s/import/debian:v1" % self.registry.host
        expected = self.converted_from_registry(ref)
        for kind, name in (("docker-archive", "deb-docker"), ("oci-archive", "deb-oci")):
            path = os.path.join(self.work, name + ".tar")
            skopeo_copy(ref, "%s:%s" % (kind, path))
            self.assertEqual(self.import_ok(path, name)["kind"], kind)
            self.assert_same_as_registry(expected, name)


if __name__ == "__main__":
    sys.exit(testrun.main())

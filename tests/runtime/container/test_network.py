"""End-to-end tests of container egress networking (server.yaml `container_network`), as root
with real runc, loop devices, bridges, veths and iptables.

Everything runs in a network namespace this test makes itself: main() re-executes the test
under `unshare --net`, so the server, its bridge, veths and NAT rule, the loopback registry
and the TCP listener on the gateway all live in that throwaway namespace and vanish with it.
No traffic goes to any address outside it.

Suites (one ctest each):
  BridgeTest  mode bridge: addresses, default route, gateway and shed-to-shed reachability,
              stop/start keeps the address, stop/delete remove veth and lease, a failed
              create leaves nothing
  NoneTest    mode none (the default): loopback only, no address

Waiting is always for a condition (bounded by attempts), never a timing threshold.

  test_network.py SUITE
"""

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctrtest  # noqa: E402
import shedserver  # noqa: E402  (on sys.path through ctrtest: SHED_FIXTURES)
from shedserver import wait_for  # noqa: E402
import shedtest  # noqa: E402  (likewise)
import testrun  # noqa: E402  (likewise)

SHED_SERVER = os.environ.get("SHED_SERVER")
FIXTURE = None  # ctrtest.FixtureRegistry, one per process
WORK = None     # temp dir of this process
IN_TEST_NETNS = "SHED_NETWORK_TEST_IN_OWN_NETNS"

BRIDGE = "shedtest0"
SUBNET = ipaddress.ip_network("10.77.0.0/24")
GATEWAY = str(SUBNET.network_address + 1)


def host_veth(ip):
    """The host end of a shed's veth: "sh" + the address in hex (container_network.h)."""
    return "sh%08x" % int(ipaddress.ip_address(ip))


def interface_exists(name):
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def broken_layer():
    """busybox with a regular file at /.shed, where runc must create a directory for
    shed-init's bind mount: `runc run` fails after the network is set up."""
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    layer = shedtest.LayerBuilder()
    for d in ("bin", "etc", "tmp", "root"):
        layer.dir(d)
    layer.file("bin/busybox", busybox, mode=0o755)
    layer.symlink("bin/sh", "busybox")
    layer.file(".shed", b"not a directory\n")
    return layer.tar_bytes()


class Server(shedserver.ServerProcess):
    def __init__(self, data_dir, network_yaml):
        pusher = shedtest.Pusher(FIXTURE.registry.url)
        shedtest.push_image(pusher, "shed/broken", "v1", [(broken_layer(), "gzip")])
        config = ("name: net-test\nbase_image: %s\nrootfs_size: 2G\ndefault_cpus: 1\n"
                  "default_memory_mb: 512\nimages:\n  tmux: %s\n  broken: %s\n%s"
                  % (FIXTURE.ref("shed/tmux"), FIXTURE.ref("shed/tmux"),
                     FIXTURE.ref("shed/broken"), network_yaml))
        super().__init__(SHED_SERVER, data_dir, config, stop_timeout=120, log_tail=4000)


class NetworkTestCase(unittest.TestCase):
    network_yaml = ""

    @classmethod
    def setUpClass(cls):
        cls.data_dir = tempfile.mkdtemp(prefix="shed-net-", dir=WORK)
        cls.server = Server(cls.data_dir, cls.network_yaml).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        ctrtest.force_cleanup(cls.data_dir)
        # Non-zero: the server crashed or (Asan build) reported a leak or an error.
        if code != 0:
            raise AssertionError("shed-server exited %s: %s" % (code, cls.server.log()))

    def setUp(self):
        self.names = []

    def tearDown(self):
        for name in self.names:
            self.server.request("DELETE", "/api/sheds/" + name)
        ctrtest.force_cleanup(self.data_dir)

    def create(self, name, **fields):
        self.names.append(name)
        status, shed = self.server.request("POST", "/api/sheds", dict(name=name, **fields))
        self.assertEqual(status, 201, shed)
        return shed

    def exec_(self, name, *command):
        return subprocess.run([SHED_SERVER, "exec", "--config", self.server.config, "--data-dir",
                               self.data_dir, name, "--"] + list(command),
                              capture_output=True, text=True)

    def interfaces(self, name):
        devs = self.exec_(name, "cat", "/proc/net/dev").stdout
        return sorted(line.split(":")[0].strip() for line in devs.splitlines()[2:])

    def lease(self, ip):
        return os.path.join(self.data_dir, "network", "leases", ip)

    def assert_instance_gone(self, name):
        inst = os.path.join(self.data_dir, "instances", name)
        self.assertFalse(os.path.exists(inst), "instance dir %s left behind" % inst)
        self.assertEqual(ctrtest.mounts_under(inst), [], "mounts left behind")
        self.assertNotIn("shed-" + name,
                         ctrtest.runc_containers(os.path.join(self.data_dir, "runc")))


class BridgeTest(NetworkTestCase):
    network_yaml = ("container_network:\n  mode: bridge\n  bridge: %s\n  subnet: %s\n"
                    % (BRIDGE, SUBNET))

    def http_listener(self):
        """python http.server on the gateway address (inside this test's namespace)."""
        root = tempfile.mkdtemp(prefix="www-", dir=WORK)
        with open(os.path.join(root, "marker.txt"), "w") as f:
            f.write("reached-the-gateway\n")
        port = shedserver.free_port()
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                                 GATEWAY, "--directory", root],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)

        def listening():
            try:
                socket.create_connection((GATEWAY, port), timeout=5).close()
                return True
            except OSError:
                return False
        self.assertTrue(wait_for(listening), "http.server did not listen on %s" % GATEWAY)
        return port

    def test_shed_gets_address_route_and_reaches_gateway(self):
        shed = self.create("alpha")
        ip = shed.get("ip_address")
        self.assertIsNotNone(ip, shed)
        self.assertIn(ipaddress.ip_address(ip), SUBNET)
        self.assertNotEqual(ip, GATEWAY)
        self.assertEqual(self.interfaces("alpha"), ["eth0", "lo"])
        self.assertTrue(interface_exists(host_veth(ip)))
        self.assertTrue(os.path.exists(self.lease(ip)))
        # /proc/net/route: a default (00000000) route via the gateway (little-endian hex).
        routes = self.exec_("alpha", "cat", "/proc/net/route").stdout.splitlines()[1:]
        gateway_hex = "%08X" % int.from_bytes(socket.inet_aton(GATEWAY), "little")
        self.assertIn(("eth0", "00000000", gateway_hex),
                      [tuple(line.split()[:3]) for line in routes])
        port = self.http_listener()
        fetch = self.exec_("alpha", "sh", "-c",
                           "printf 'GET /marker.txt HTTP/1.0\\r\\n\\r\\n' | socat - TCP:%s:%d"
                           % (GATEWAY, port))
        self.assertIn("reached-the-gateway", fetch.stdout, fetch.stderr)
        status, one = self.server.request("GET", "/api/sheds/alpha")
        self.assertEqual(one.get("ip_address"), ip)

    def test_two_sheds_get_different_addresses_and_reach_each_other(self):
        ip_a = self.create("east")["ip_address"]
        ip_b = self.create("west")["ip_address"]
        self.assertNotEqual(ip_a, ip_b)
        self.exec_("east", "sh", "-c", "socat TCP-LISTEN:7000,bind=%s,fork,reuseaddr "
                   "SYSTEM:'echo hello-from-east' >/dev/null 2>&1 &" % ip_a)
        reply = wait_for(lambda: "hello-from-east" in self.exec_(
            "west", "sh", "-c", "socat -T5 - TCP:%s:7000 </dev/null" % ip_a).stdout)
        self.assertTrue(reply, "west could not reach east at %s" % ip_a)

    def test_stop_removes_veth_keeps_address_delete_releases_it(self):
        ip = self.create("cycle")["ip_address"]
        status, body = self.server.request("POST", "/api/sheds/cycle/stop")
        self.assertEqual(status, 200, body)
        self.assertFalse(interface_exists(host_veth(ip)), "veth left after stop")
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "instances", "cycle",
                                                     "container", "netns")))
        self.assertTrue(os.path.exists(self.lease(ip)), "the address is kept while stopped")
        status, body = self.server.request("POST", "/api/sheds/cycle/start")
        self.assertEqual(status, 200, body)
        self.assertEqual(body.get("ip_address"), ip)
        self.assertTrue(interface_exists(host_veth(ip)))
        status, body = self.server.request("DELETE", "/api/sheds/cycle")
        self.assertIn(status, (200, 204), body)
        self.names.remove("cycle")
        self.assertFalse(interface_exists(host_veth(ip)), "veth left after delete")
        self.assertFalse(os.path.exists(self.lease(ip)), "lease left after delete")
        self.assert_instance_gone("cycle")

    def test_failed_create_leaves_no_veth_or_lease(self):
        status, body = self.server.request("POST", "/api/sheds",
                                           {"name": "broken", "image": "broken"})
        self.assertEqual(status, 500, body)
        self.assertEqual(body["error"]["code"], "BACKEND_ERROR")
        self.assertIn("runc", body["error"]["message"])
        veths = [name for _, name in socket.if_nameindex() if name.startswith("sh") and
                 name != BRIDGE]
        self.assertEqual(veths, [], "veth left after a failed create")
        leases = os.path.join(self.data_dir, "network", "leases")
        self.assertEqual(os.listdir(leases) if os.path.isdir(leases) else [], [])
        self.assert_instance_gone("broken")

    def test_failed_network_setup_leaves_no_namespace_or_lease(self):
        # An interface already named like the first shed's veth: `ip link add` fails after
        # the lease and the namespace file were taken.
        blocker = host_veth(str(SUBNET.network_address + 2))
        subprocess.run(["ip", "link", "add", blocker, "type", "bridge"], check=True)
        # The backend takes an interface with its veth name for its own leftover and
        # removes it; deleting it here too is for a failure before that.
        self.addCleanup(subprocess.run, ["ip", "link", "del", blocker], capture_output=True)
        status, body = self.server.request("POST", "/api/sheds", {"name": "blocked"})
        self.assertEqual(status, 500, body)
        self.assertIn("cannot connect the shed to bridge", body["error"]["message"])
        leases = os.path.join(self.data_dir, "network", "leases")
        self.assertEqual(os.listdir(leases), [])
        self.assert_instance_gone("blocked")

    def test_nat_rule_for_the_subnet(self):
        self.create("natted")
        rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"],
                               capture_output=True, text=True, check=True).stdout
        self.assertIn("-A POSTROUTING -s %s ! -o %s -j MASQUERADE" % (SUBNET, BRIDGE), rules)
        self.assertEqual(rules.count("-s %s " % SUBNET), 1)
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            self.assertEqual(f.read().strip(), "1")


class NoneTest(NetworkTestCase):
    def test_default_is_loopback_only_without_address(self):
        shed = self.create("plain")
        self.assertIsNone(shed.get("ip_address"))
        self.assertEqual(self.interfaces("plain"), ["lo"])
        self.assertFalse(interface_exists("shed0"))


def skip_reason():
    reason = ctrtest.skip_reason()
    if reason is None:
        for tool in ("iptables", "unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                reason = "%s is not installed" % tool
                break
    if reason is None and (not SHED_SERVER or not os.environ.get("SHED_BACKEND_DRIVER")):
        reason = "SHED_SERVER / SHED_BACKEND_DRIVER not set (run through ctest)"
    return reason


def enter_own_network_namespace():
    """Re-executes this test in a new network namespace (loopback up), so no bridge, veth or
    NAT rule ever touches the machine's own namespace. Returns only inside it."""
    if os.environ.get(IN_TEST_NETNS) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    env = dict(os.environ, **{IN_TEST_NETNS: "1"})
    os.execvpe("unshare", ["unshare", "--net", "--", sys.executable,
                           os.path.abspath(__file__)] + sys.argv[1:], env)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    reason = skip_reason()
    if reason:
        return testrun.skip_all(reason)
    enter_own_network_namespace()

    def load_suite(work, fixture):
        global FIXTURE, WORK
        WORK, FIXTURE = work, fixture
        return unittest.defaultTestLoader.loadTestsFromName(sys.argv[1], sys.modules[__name__])

    return ctrtest.run_suite("shed-net-", load_suite)


if __name__ == "__main__":
    sys.exit(main())

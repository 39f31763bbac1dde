package appliance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relais/relais/appliance/config"
	"github.com/relais/relais/appliance/control"
	"github.com/relais/relais/testdata/dcmgen"
	"github.com/relais/relais/testdata/peers"
	"github.com/relais/relais/vpn"
)

// The whole path on real parts: relaisd in a "hospital" namespace with the
// embedded userspace WireGuard, a real Orthanc in a "reading-center"
// namespace reachable only through the tunnel (its WireGuard end run by
// this test binary in that namespace), and the veth between them cut for
// 30 s while a study waits.

const centerConfEnv = "RELAIS_TEST_CENTER_WG"

// TestNetnsCenterWireGuard is not a test: re-executed inside the
// reading-center namespace, it runs that side's WireGuard until killed.
func TestNetnsCenterWireGuard(t *testing.T) {
	path := os.Getenv(centerConfEnv)
	if path == "" {
		t.Skip("helper process for TestStudyCrossesTunnelToOrthancAcrossLinkCut")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, key, err := vpn.ParseWGQuick(f)
	f.Close()
	if err != nil || key == nil {
		t.Fatalf("center config: %v", err)
	}
	cfg.Mode, cfg.Interface = vpn.ModeUserspace, "wgc"
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	tun, err := vpn.Up(ctx, cfg, *key, vpn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	fmt.Println("center tunnel ready")
	<-ctx.Done()
}

func TestStudyCrossesTunnelToOrthancAcrossLinkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts a link for 30 s: not in -short")
	}
	peers.RequireNetns(t)
	peers.Require(t, "Orthanc", "storescu", "nft")
	bin := buildRelaisd(t)
	dir := t.TempDir()
	hosp, rc, tunnel := netnsCenter(t, dir)
	o := peers.StartOrthanc(t, peers.OrthancOptions{Netns: rc})
	nft := filepath.Join(t.TempDir(), "rules.nft")
	os.WriteFile(nft, []byte(fmt.Sprintf(`table inet relais_test {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "vr" tcp dport { %d, %d } drop
	}
}
`, o.DICOM, o.HTTP)), 0o644)
	rc.Run(t, "nft", "-f", nft)

	// The box, in the hospital.
	port := 11112
	cfg := testConfig(port, nil, false)
	cfg.Destinations = []config.Destination{{Name: "center", AETitle: o.AET, Host: "10.213.0.1", Port: o.DICOM}}
	cfg.Tunnel = tunnel
	if err := config.Save(filepath.Join(dir, "relais.json"), cfg); err != nil {
		t.Fatal(err)
	}
	cl := startIn(t, hosp, dir, bin, "-data", dir)
	ctx := context.Background()
	send := func(c *corpus) {
		t.Helper()
		name, args := hosp.Command("storescu", "-aec", "RELAIS", "-aet", "STORESCU", "+sd", "127.0.0.1", strconv.Itoa(port), c.dir)
		if out, err := peers.DCMTK(t, name, args...); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
	}

	first := series(t, t.TempDir(), 30, 256, 901, nil)
	send(first)
	waitOrthanc(t, o, 30, 2*time.Minute)
	st, _ := cl.Status(ctx)
	if st.Tunnel.State != "up" || st.Tunnel.Mode != "userspace" || st.Tunnel.TxBytes < 30*128<<10 {
		t.Fatalf("the study did not go through the tunnel: %+v", st.Tunnel)
	}

	// Cut the link for 30 s; a second study waits in the queue.
	hosp.IP(t, "link", "set", "vh", "down")
	second := series(t, t.TempDir(), 30, 256, 902, nil)
	send(second)
	peers.Eventually(t, 30*time.Second, "the second study queued", func() (bool, string) {
		st, _ := cl.Status(ctx)
		return len(st.Destinations) == 1 && st.Destinations[0].QueueDepth > 0, fmt.Sprintf("%+v", st.Destinations)
	})
	time.Sleep(30 * time.Second)
	if n, _ := o.InstanceCount(); n != 30 {
		t.Fatalf("Orthanc got %d instances while the link was down", n)
	}
	st, _ = cl.Status(ctx)
	t.Logf("after 30 s without a link: %+v, tunnel %s", st.Destinations[0], st.Tunnel.State)
	hosp.IP(t, "link", "set", "vh", "up")
	cl.Retry(ctx, "center") // what the technician's "retry now" does; the backoff would get there too
	waitOrthanc(t, o, 60, 3*time.Minute)

	arrived, err := o.Arrivals()
	if err != nil {
		t.Fatal(err)
	}
	// storescu +sd sends in directory order and the box forwards as
	// instances come, so only the set is compared: once each, none missing.
	want := slices.Concat(first.uids, second.uids)
	slices.Sort(arrived)
	slices.Sort(want)
	if !slices.Equal(arrived, want) {
		t.Fatalf("Orthanc got %d arrivals, want the %d instances once each", len(arrived), len(want))
	}
	sameAtOrthanc(t, o, slices.Concat(first.files, second.files))

	resultsComeBack(t, hosp, cl, cfg, o, first)
}

// startIn starts relaisd (bin, with args) in namespace n and waits for its
// control socket in dir to answer.
func startIn(t *testing.T, n *peers.Netns, dir, bin string, args ...string) *control.Client {
	t.Helper()
	name, args := n.Command(bin, args...)
	peers.Start(t, name, args...)
	cl := control.NewClient(SocketPath(dir))
	peers.Eventually(t, 30*time.Second, "relaisd answering", func() (bool, string) {
		_, err := cl.Status(context.Background())
		return err == nil, fmt.Sprint(err)
	})
	return cl
}

// netnsCenter sets up the hospital's and the reading center's namespaces,
// joined by a veth (the box's uplink, 10.213.255.1, to the center's
// endpoint, 10.213.255.2), makes the box's key in dir, and runs the
// center's WireGuard end (10.213.0.1) in its namespace, as the responder.
// It returns the box's side of the tunnel: userspace mode, 10.213.0.2.
func netnsCenter(t *testing.T, dir string) (hosp, rc *peers.Netns, tunnel config.Tunnel) {
	t.Helper()
	hosp = peers.NewNetns(t, "relais-hosp")
	rc = peers.NewNetns(t, "relais-rc")
	peers.Veth(t, hosp, "vh", "10.213.255.1/30", rc, "vr", "10.213.255.2/30")

	// Keys: the box's is made where relaisd will find it.
	boxKey, err := vpn.LoadOrCreateKey(filepath.Join(dir, keyDir))
	if err != nil {
		t.Fatal(err)
	}
	centerKey, _ := vpn.GenerateSecretKey()
	conf := filepath.Join(t.TempDir(), "center.conf")
	f, _ := os.Create(conf)
	(vpn.Config{Address: netip.MustParsePrefix("10.213.0.1/24"), ListenPort: 51820,
		Peer: vpn.Peer{PublicKey: boxKey.PublicKey(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.213.0.2/32")}}}).WriteWGQuick(f, &centerKey)
	f.Close()
	name, args := rc.Command(os.Args[0], "-test.run=^TestNetnsCenterWireGuard$", "-test.v")
	center := exec.Command(name, args...)
	center.Env = append(os.Environ(), centerConfEnv+"="+conf)
	out, _ := center.StdoutPipe()
	center.Stderr = os.Stderr
	if err := center.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		center.Process.Signal(syscall.SIGTERM)
		center.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "center tunnel ready") && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	if !<-ready {
		t.Fatal("the reading center's WireGuard did not start")
	}
	return hosp, rc, config.Tunnel{Mode: "userspace", Address: "10.213.0.2/24", PeerPublicKey: centerKey.PublicKey().String(),
		Endpoint: "10.213.255.2:51820", AllowedIPs: []string{"10.213.0.1/32"}, KeepaliveSeconds: 5}
}

// resultsComeBack: the reading center sends a report (an SR of the first
// study) back through the tunnel, as a radiologist's result; the box hands
// it to the hospital's local PACS, bit-exact, and never back to the center.
func resultsComeBack(t *testing.T, hosp *peers.Netns, cl *control.Client, cfg config.Config, o *peers.Orthanc, study *corpus) {
	t.Helper()
	ctx := context.Background()
	local := t.TempDir()
	name, args := hosp.Command("storescp", "-aet", "LOCALPACS", "+B", "-od", local, "11113")
	peers.Start(t, name, args...)
	cfg.Destinations = append(cfg.Destinations, config.Destination{Name: "local", AETitle: "LOCALPACS", Host: "127.0.0.1", Port: 11113,
		Only: config.Match{CallingAETitles: []string{o.AET}}})
	if err := cl.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	studyUID := dcmgen.Instance{Seed: 901}.Defaults().StudyInstanceUID
	sr := filepath.Join(t.TempDir(), "report.dcm")
	peers.Require(t, "dcmodify")
	b, err := os.ReadFile("/usr/lib/python3/dist-packages/pydicom/data/test_files/test-SR.dcm")
	if err != nil {
		t.Skipf("pydicom's test-SR.dcm (python3-pydicom): %v", err)
	}
	os.WriteFile(sr, b, 0o644)
	if out, err := peers.DCMTK(t, "dcmodify", "-nb", "-m", "StudyInstanceUID="+studyUID, sr); err != nil {
		t.Fatalf("dcmodify: %v\n%s", err, out)
	}
	id, err := o.Upload(sr)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.RegisterModality("RELAIS", "10.213.0.2", 11112); err != nil {
		t.Fatal(err)
	}
	before, _ := o.InstanceCount()
	if err := o.SendTo("RELAIS", id); err != nil {
		t.Fatalf("the center sending the report back: %v", err)
	}
	peers.Eventually(t, time.Minute, "the report at the local PACS", func() (bool, string) {
		return countFiles(local) == 1, fmt.Sprintf("%d files", countFiles(local))
	})
	es, _ := os.ReadDir(local)
	_, got := dataSetSumFile(t, filepath.Join(local, es[0].Name()))
	_, want := dataSetSumFile(t, sr)
	if got != want {
		t.Fatalf("the local PACS got other bytes than the center sent")
	}
	st, _, err := cl.Study(ctx, studyUID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range st.Destinations {
		if d.Name == "center" && d.Pending+d.InFlight+d.Delivered+d.Failed+d.Parked > 30 {
			t.Fatalf("the report was queued back to the center: %+v", st.Destinations)
		}
	}
	time.Sleep(2 * time.Second)
	if after, _ := o.InstanceCount(); after != before {
		t.Fatalf("the center holds %d instances after sending the report, %d before: it got something back", after, before)
	}
	if n := countFiles(local); n != 1 {
		t.Fatalf("the local PACS got %d files, want only the report (the images go to the center only)", n)
	}
	t.Logf("report: center → box → local PACS, bit-exact; not sent back")
}

// TestConsoleAndMetricsThroughTheTunnelOnly: relaisd with the images' flags
// (-metrics=tunnel:9104 -ssh-console=tunnel:22=127.0.0.1:2222, the embedded
// userspace WireGuard) and relais-ssh on loopback, in the hospital's
// namespace. From the reading center's namespace, through the tunnel,
// OpenSSH's ssh with the team's key (allowed on the console's list) gets
// the console (the dashboard, naming the box and the center's address) and
// learns the host key the console's page shows; another key is refused; the
// metrics answer. From a workstation on the hospital LAN neither answers:
// not on the box's LAN address, nor on its tunnel address routed through
// the box; nor from the center's side outside the tunnel (the box's uplink
// address). DICOM answers the LAN on both addresses: the refusals are not a
// routing failure.
func TestConsoleAndMetricsThroughTheTunnelOnly(t *testing.T) {
	peers.RequireNetns(t)
	peers.Require(t, "ssh", "ssh-keygen")
	relaisd, relaisSSH := buildCommand(t, "relaisd"), buildCommand(t, "relais-ssh")
	dir := t.TempDir()
	hosp, rc, tunnel := netnsCenter(t, dir)
	lan := peers.NewNetns(t, "relais-lan")
	peers.Veth(t, hosp, "vl", "10.213.254.1/24", lan, "vw", "10.213.254.2/24")
	lan.IP(t, "route", "add", "10.213.0.0/24", "via", "10.213.254.1") // a workstation that tries

	cfg := testConfig(11112, nil, false)
	cfg.AETitle = "CHU_NORD"
	cfg.Tunnel = tunnel
	if err := config.Save(filepath.Join(dir, "relais.json"), cfg); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	cl := startIn(t, hosp, dir, relaisd, "-data", dir, "-metrics=tunnel:9104", "-ssh-console=tunnel:22=127.0.0.1:2222")
	name, args := hosp.Command(relaisSSH, "-data", dir, "-listen", "127.0.0.1:2222", "-image-keys", "")
	peers.Start(t, name, args...)
	ctx := context.Background()
	keys := t.TempDir()
	for _, k := range []string{"team", "stranger"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k+"@center", "-f", filepath.Join(keys, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(keys, "team.pub"))
	if _, err := cl.AddConsoleKey(ctx, string(pub), "netns test"); err != nil {
		t.Fatal(err)
	}
	peers.Eventually(t, time.Minute, "the tunnel up", func() (bool, string) {
		st, err := cl.Status(ctx)
		return err == nil && st.Tunnel.State == "up", fmt.Sprintf("%+v %v", st.Tunnel, err)
	})
	up := time.Since(began)

	// The reading center, through the tunnel.
	knownHosts := filepath.Join(keys, "known_hosts")
	ssh := func(key string) *exec.Cmd {
		name, args := rc.Command("ssh", "-tt", "-i", filepath.Join(keys, key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
			"-o", "UserKnownHostsFile="+knownHosts, "-o", "ConnectTimeout=10", "team@10.213.0.2")
		return exec.Command(name, args...)
	}
	screen := peers.StartTerminal(t, ssh("team"))
	// Not "Relais CHU_NORD…": when the first frame came before relaisd's
	// status ("Relais (ssh …)"), the renderer rewrites the header from the
	// first cell that changed.
	screen.WaitFor("the box's dashboard over SSH", "CHU_NORD:11112 (ssh team@10.213.0.1:")
	screen.WaitFor("the dashboard's receiving line", "nothing received yet")
	dashboard := time.Since(began)
	screen.Quit("q")
	if out, err := ssh("stranger").CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied (publickey)") {
		t.Fatalf("a key not on the list: %v\n%s", err, out)
	}
	waitEvent(t, cl, "console", "console over SSH: connection from 10.213.0.1")
	learnt, err := exec.Command("ssh-keygen", "-l", "-f", knownHosts).CombinedOutput()
	if k, _ := cl.ConsoleKeys(ctx); err != nil || k.HostKey == "" || !strings.Contains(string(learnt), k.HostKey) {
		t.Fatalf("ssh learnt %s (%v); the console's page shows host key %q", learnt, err, k.HostKey)
	}

	center := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: rc.Dial}}
	rsp, err := center.Get("http://10.213.0.2:9104/metrics")
	if err != nil {
		t.Fatalf("metrics through the tunnel: %v", err)
	}
	body, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if rsp.StatusCode != 200 || !strings.Contains(string(body), "relais_tunnel_up 1") {
		t.Fatalf("metrics through the tunnel: %s\n%.300s", rsp.Status, body)
	}

	// Everyone else.
	refused := func(n *peers.Netns, who, addr string) {
		t.Helper()
		c, err := n.Dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			t.Errorf("%s reaches %s", who, addr)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s to %s: %v, want connection refused", who, addr, err)
		}
	}
	for _, addr := range []string{"10.213.254.1:22", "10.213.254.1:9104", "10.213.0.2:22", "10.213.0.2:9104"} {
		refused(lan, "the hospital LAN", addr)
	}
	for _, addr := range []string{"10.213.255.1:22", "10.213.255.1:9104"} {
		refused(rc, "the center outside the tunnel", addr)
	}
	for _, addr := range []string{"10.213.254.1:11112", "10.213.0.2:11112"} {
		c, err := lan.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("the hospital LAN does not reach DICOM at %s: %v (the refusals above prove nothing)", addr, err)
		}
		c.Close()
	}
	t.Logf("tunnel up %v after relaisd started; the dashboard over SSH through it at %v", up.Round(time.Millisecond), dashboard.Round(time.Millisecond))
}

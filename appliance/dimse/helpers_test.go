package dimse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/relais/relais/appliance/part10"
)

// testLogger shows association logs with -v only.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// startServer serves srv on a loopback port until the test ends.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
}

// received is one data set a test SCP got.
type received struct {
	req       StoreRequest
	size      int64
	sum       [32]byte
	fragments int
	aborted   error
}

// recorder is a test SCP's storage: it hashes every data set (and keeps the
// bytes when keep is set) and answers Success.
type recorder struct {
	mu    sync.Mutex
	got   map[string]*received
	data  map[string][]byte
	keep  bool
	dir   string // when set, data sets are written to files there
	order []string
}

func newRecorder(keep bool) *recorder {
	return &recorder{got: map[string]*received{}, data: map[string][]byte{}, keep: keep}
}

type recSink struct {
	r   *recorder
	rcv *received
	h   hash
	buf *bytes.Buffer
	f   *os.File
}

type hash interface {
	io.Writer
	Sum([]byte) []byte
}

func (s *recSink) Write(p []byte) (int, error) {
	s.rcv.fragments++
	s.rcv.size += int64(len(p))
	s.h.Write(p)
	if s.buf != nil {
		s.buf.Write(p)
	}
	if s.f != nil {
		s.f.Write(p)
	}
	return len(p), nil
}

func (s *recSink) Close() Status {
	copy(s.rcv.sum[:], s.h.Sum(nil))
	if s.f != nil {
		s.f.Close()
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.got[s.rcv.req.SOPInstanceUID] = s.rcv
	s.r.order = append(s.r.order, s.rcv.req.SOPInstanceUID)
	if s.buf != nil {
		s.r.data[s.rcv.req.SOPInstanceUID] = s.buf.Bytes()
	}
	return StatusSuccess
}

func (s *recSink) Abort(err error) {
	if s.f != nil {
		s.f.Close()
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.rcv.aborted = err
	s.r.got["aborted:"+s.rcv.req.SOPInstanceUID] = s.rcv
}

func (r *recorder) store(_ context.Context, _ *Association, req *StoreRequest) StoreSink {
	s := &recSink{r: r, rcv: &received{req: *req}, h: sha256.New()}
	if r.keep {
		s.buf = &bytes.Buffer{}
	}
	if r.dir != "" {
		s.f, _ = os.Create(filepath.Join(r.dir, req.SOPInstanceUID))
	}
	return s
}

func (r *recorder) get(uid string) *received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[uid]
}

// dataSet returns the meta information and data set bytes of a Part 10 file.
func dataSet(t testing.TB, path string) (part10.Meta, []byte) {
	t.Helper()
	m, b, err := part10.ReadDataSet(path)
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

// dataSetHash streams a Part 10 file's data set through SHA-256.
func dataSetHash(t testing.TB, path string) (part10.Meta, int64, [32]byte) {
	t.Helper()
	m, rc, err := part10.OpenDataSet(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	return m, n, [32]byte(h.Sum(nil))
}

// pydicomFile is a file from Debian's python3-pydicom test data.
func pydicomFile(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("/usr/lib/python3/dist-packages/pydicom/data/test_files", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("pydicom test file %s missing (bash .ci/run installs python3-pydicom): %v", name, err)
	}
	return p
}

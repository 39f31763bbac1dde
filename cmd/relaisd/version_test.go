package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relais/relais/appliance/guard"
)

func TestVersionLineNamesTheImage(t *testing.T) {
	if got := versionLine("0123456789ab"); !strings.Contains(got, "relaisd dev, image 0123456789ab, go1.") {
		t.Errorf("versionLine = %q", got)
	}
	if got := versionLine(""); !strings.Contains(got, "image none") {
		t.Errorf("versionLine outside an image = %q", got)
	}
}

type noAPI struct{}

func (noAPI) Switch(context.Context) error { return nil }
func (noAPI) Reboot(context.Context) error { return nil }

// TestGuardStateShowsTheLastRollback: after a rollback, the good image's
// relaisd reports its state and when the guard switched back.
func TestGuardStateShowsTheLastRollback(t *testing.T) {
	dir := t.TempDir()
	boot := func(img string) (*guard.Guard, guard.Report) {
		g := guard.New(guard.Config{Dir: dir, API: noAPI{}, Deadline: 100 * time.Millisecond, Retry: 10 * time.Millisecond,
			Image: func() (guard.Image, error) { return guard.Image{Root: "PARTUUID=" + img, SBOM: img}, nil }})
		return g, g.Begin(context.Background())
	}
	boot("aaaa")
	g, _ := boot("bbbb")
	broken := guard.Check{Name: "scp", Run: func(context.Context) error { return errors.New("down") }}
	if rep := g.Verify(context.Background(), []guard.Check{broken}); rep.State != guard.RolledBack {
		t.Fatalf("verify on the new image: %v", rep)
	}
	g, begin := boot("aaaa")
	u := &updateGuard{g: g, begin: begin}
	u.last.Store(&begin)
	s := u.state()
	if s.State != string(guard.Known) || time.Since(s.LastRollback) > time.Minute {
		t.Fatalf("state %+v", s)
	}
}

package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// TestChangesShareTransactionsAndFailAlone: concurrent changes are applied
// together, and one that fails, having written, leaves nothing of its own
// while the others batched with it are applied; changes too many for one
// transaction are split, not failed.
func TestChangesShareTransactionsAndFailAlone(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	errRefused := errors.New("refused")
	k := func(g, i, j int) []byte { return fmt.Appendf(nil, "zz/%d/%d/%d", g, i, j) }
	txns, applied := s.changes.txns.Load(), s.changes.applied.Load()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				fail := i%5 == 2
				big := i%4 == 3 // 300 rows of 900 bytes: three of them overfill a test transaction
				err := s.change(func(txn *badger.Txn) error {
					rows := 1
					if big {
						rows = 300
					}
					for j := range rows {
						if err := txn.Set(k(g, i, j), make([]byte, 900)); err != nil {
							return err
						}
					}
					if fail {
						return errRefused
					}
					return nil
				})
				if fail != errors.Is(err, errRefused) || !fail && err != nil {
					t.Errorf("change %d/%d (fails %v): %v", g, i, fail, err)
				}
			}
		})
	}
	wg.Wait()
	err := s.view(func(txn *badger.Txn) error {
		for g := range 8 {
			for i := range 40 {
				_, err := txn.Get(k(g, i, 0))
				if kept := err == nil; kept == (i%5 == 2) {
					t.Errorf("change %d/%d (fails %v): its row kept %v", g, i, i%5 == 2, kept)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, m := s.changes.txns.Load()-txns, s.changes.applied.Load()-applied
	t.Logf("%d changes applied in %d transactions (%.1f each)", m, n, float64(m)/float64(n))
}

// TestGenerationMovesWithEveryChangeOnly: a change that becomes visible
// moves Generation (a stored instance, a delivery, an event), a read does
// not, and a change that fails leaves it where it was — so an answer cached
// under a generation is rebuilt after anything it may show has changed.
func TestGenerationMovesWithEveryChangeOnly(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	last := s.Generation()
	moved := func(what string, want bool) {
		t.Helper()
		g := s.Generation()
		if (g != last) != want {
			t.Errorf("%s: generation %d → %d, want moved %v", what, last, g, want)
		}
		last = g
	}
	m := meta("1.2.3", "1.2.3.1", "1.2.3.1.1", 1, 1)
	put(t, s, m, []byte("instance"), "pacs")
	moved("an instance stored", true)
	if _, err := s.Stats(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Study(t.Context(), "1.2.3"); err != nil {
		t.Fatal(err)
	}
	moved("reads", false)
	for _, uid := range leaseUIDs(t, s, "pacs", 1) {
		if err := s.Delivered("pacs", uid); err != nil {
			t.Fatal(err)
		}
	}
	moved("a lease and a delivery", true)
	if err := s.Log(Event{Kind: KindStore, Severity: Info, Message: "an event"}); err != nil {
		t.Fatal(err)
	}
	moved("an event logged", true)
	if err := s.change(func(*badger.Txn) error { return errors.New("refused") }); err == nil {
		t.Fatal("a failing change succeeded")
	}
	moved("a change that failed", false)
}

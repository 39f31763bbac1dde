package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// oldChunk is the chunk size the format 2 stores of these tests use.
const oldChunk = 16 << 10

// makeFormat2 rewrites s in the layout format 2 wrote, then closes it: every
// copy's bytes in chunks under tagChunk (in place of files and inline
// values), records with the number of chunks and no copy rows, no swept
// mark, version 2; and the chunks of a writer cut by a crash behind their
// pending marker.
func makeFormat2(t *testing.T, s *Store) {
	t.Helper()
	var recs []Instance
	var keys [][]byte
	err := s.view(func(txn *badger.Txn) error {
		for _, tag := range []byte{tagInstance, tagConflict} {
			err := scanJSON(context.Background(), txn, []byte{tag}, func(k []byte, r *Instance) (bool, error) {
				recs, keys = append(recs, *r), append(keys, k)
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		data := readAll(t, s, r)
		n := 0
		for ; len(data) > 0; n++ { // a transaction each: as format 2 wrote them
			chunk := data[:min(len(data), oldChunk)]
			data = data[len(chunk):]
			err := s.change(func(txn *badger.Txn) error { return txn.Set(chunkKey(r.ID, uint32(n)), chunk) })
			if err != nil {
				t.Fatal(err)
			}
		}
		err := s.change(func(txn *badger.Txn) error {
			var old map[string]any
			b, _ := json.Marshal(&r)
			json.Unmarshal(b, &old)
			delete(old, "Inline")
			old["Chunks"] = n
			b, _ = json.Marshal(old)
			for _, k := range [][]byte{copyKey(r.ID), inlineKey(r.ID)} {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return txn.Set(keys[i], b)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err = s.change(func(txn *badger.Txn) error {
		cut := s.newID()
		for _, k := range [][]byte{pendingKey(cut), chunkKey(cut, 0), chunkKey(cut, 1)} {
			if err := txn.Set(k, []byte("half an instance")); err != nil {
				return err
			}
		}
		for _, k := range []key{sweptKey(), readerKey()} { // format 2 had neither
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return txn.Set(formatKey(), binary.BigEndian.AppendUint64(nil, 2))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(s.dir, filesDir)); err != nil {
		t.Fatal(err)
	}
}

func pendingKey(id uint64) key { return newKey(tagPending).u64(id) }

func readAll(t testing.TB, s *Store, r Instance) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := b.ReadFrom(s.OpenInstance(context.Background(), r)); err != nil {
		t.Fatalf("read %s: %v", r.SOPInstanceUID, err)
	}
	return b.Bytes()
}

// held is what a test compares before and after an upgrade: every copy's
// bytes and every queue entry.
type held struct {
	bytes   map[uint64][]byte
	entries map[string][]Entry
	stats   Stats
}

func holdings(t *testing.T, s *Store, uids []string) held {
	t.Helper()
	h := held{bytes: map[uint64][]byte{}, entries: map[string][]Entry{}}
	for _, uid := range uids {
		if r, err := s.Instance(uid); err == nil {
			h.bytes[r.ID] = readAll(t, s, r)
		}
		cs, err := s.Conflicts(context.Background(), uid)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			h.bytes[c.ID] = readAll(t, s, c)
		}
		if h.entries[uid], err = s.Entries(uid); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if h.stats, err = s.Stats(); err != nil {
		t.Fatal(err)
	}
	h.stats.Space, h.stats.LSMBytes, h.stats.VlogBytes = Space{}, 0, 0
	return h
}

// fillForUpgrade stores instances of many sizes, some flagged, in every
// queue state a box holds when it is updated (no lease: Open ends them).
func fillForUpgrade(t *testing.T, s *Store) []string {
	t.Helper()
	rng := rand.New(rand.NewPCG(21, 21))
	var uids []string
	for i, n := range []int{0, 1, 1000, oldChunk, oldChunk + 1, 60 << 10, 100 << 10, 300 << 10, 1 << 20, 7, 70 << 10, 5000} {
		uid := fmt.Sprintf("1.2.%d", i)
		uids = append(uids, uid)
		put(t, s, meta(fmt.Sprint("S", i%3), fmt.Sprint("S", i%3, ".1"), uid, 1, i), randomBytes(rng, n), "pacs", "archive")
	}
	put(t, s, meta("S0", "S0.1", "1.2.6", 1, 6), randomBytes(rng, 90<<10), "pacs") // a flagged copy
	put(t, s, meta("S0", "S0.1", "1.2.9", 1, 9), []byte("another"), "pacs")
	put(t, s, meta("S9", "S9.1", "held", 1, 1), randomBytes(rng, 40<<10)) // queued nowhere
	uids = append(uids, "held")
	for _, uid := range leaseUIDs(t, s, "pacs", 5) {
		if err := s.Delivered("pacs", uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Committed("pacs", uids[0], uids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Failed("archive", uids[3], Failure{Reason: "refused", RetryAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return uids
}

// oldStore fills a format 2 store in dir, closed, and returns its UIDs and
// what it holds.
func oldStore(t *testing.T, dir string, o Options) ([]string, held) {
	s := openTest(t, dir, o)
	uids := fillForUpgrade(t, s)
	before := holdings(t, s, uids)
	makeFormat2(t, s)
	return uids, before
}

func TestUpgradeMovesChunksToFiles(t *testing.T) {
	defer func(n int) { moveBatchCopies = n }(moveBatchCopies)
	moveBatchCopies = 4 // several batches, several progress lines
	dir, o := t.TempDir(), testOptions()
	uids, before := oldStore(t, dir, o)
	for open := range 2 {
		var log bytes.Buffer
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
		s := openTest(t, dir, o)
		after := holdings(t, s, uids)
		if !reflect.DeepEqual(after.bytes, before.bytes) {
			t.Fatalf("open %d: the bytes read back differ from those stored (%d copies, %d before)", open, len(after.bytes), len(before.bytes))
		}
		if !reflect.DeepEqual(after.entries, before.entries) {
			t.Errorf("open %d: queue entries %+v, before %+v", open, after.entries, before.entries)
		}
		if !reflect.DeepEqual(after.stats, before.stats) {
			t.Errorf("open %d: stats %+v, before %+v", open, after.stats, before.stats)
		}
		if v, err := s.readFormat(); err != nil || v != formatVersion {
			t.Errorf("open %d: format %d, %v", open, v, err)
		}
		checkConsistent(t, s)
		evs, err := s.Events(context.Background(), EventQuery{Kinds: []Kind{KindStore}})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("store upgraded: %d instances moved to files", len(before.bytes))
		if len(evs) != 1 || !strings.HasPrefix(evs[0].Message, want) {
			t.Errorf("open %d: events %+v, want one %q", open, evs, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		progress := strings.Count(log.String(), "instances to files")
		if open == 0 && (progress < len(before.bytes)/4 || !strings.Contains(log.String(), fmt.Sprintf("moved %d of %d instances to files", len(before.bytes), len(before.bytes)))) {
			t.Errorf("first open logged %d progress lines:\n%s", progress, log.String())
		}
		if open == 1 && progress != 0 {
			t.Errorf("second open moved again:\n%s", log.String())
		}
		t.Logf("open %d: %d copies, %v", open, len(after.bytes), evs[0].Message)
	}
}

// TestUpgradeCutShortGoesOn: an upgrade cut after a batch was recorded as
// moved, with that batch's chunks partly dropped, goes on from there: the
// moved copies are not written again from what is left of their chunks.
func TestUpgradeCutShortGoesOn(t *testing.T) {
	dir, o := t.TempDir(), testOptions()
	uids, before := oldStore(t, dir, o)

	// What the first batch of four left: their files, the mark, and their
	// chunks but the last.
	db, err := badger.Open(o.withDefaults().badger(dir))
	if err != nil {
		t.Fatal(err)
	}
	cut := &Store{dir: dir}
	chunks := map[uint64][][]byte{}
	var ids []uint64
	err = db.View(func(txn *badger.Txn) error {
		return scan(context.Background(), txn, []byte{tagChunk}, false, func(item *badger.Item) (bool, error) {
			id := idFromKey(item.Key())
			if _, err := txn.Get(copyKey(id)); err == nil {
				return false, fmt.Errorf("copy row of %d in a format 2 store", id)
			}
			if _, ok := chunks[id]; !ok {
				if len(ids) == 4 {
					return false, nil
				}
				ids = append(ids, id)
			}
			v, err := item.ValueCopy(nil)
			chunks[id] = append(chunks[id], v)
			return true, err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		for _, id := range ids {
			if err := os.MkdirAll(cut.fileDir(id), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(cut.filePath(id), bytes.Join(chunks[id], nil), 0o600); err != nil {
				return err
			}
			if err := txn.Delete(chunkKey(id, uint32(len(chunks[id])-1))); err != nil {
				return err
			}
		}
		return txn.Set(movedKey(), binary.BigEndian.AppendUint64(nil, ids[len(ids)-1]))
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}

	s := openTest(t, dir, o)
	if after := holdings(t, s, uids); !reflect.DeepEqual(after.bytes, before.bytes) {
		t.Fatal("the bytes read back differ from those stored")
	}
	checkConsistent(t, s)
}

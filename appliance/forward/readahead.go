package forward

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/relais/relais/store"
)

// readAheadMax: an instance up to this size is read whole, its hash
// checked, while the destination works on the one before it, and is then
// sent from memory. Streamed from its file as it was sent, a CT slice's 32
// reads and its SHA-256 were on the path of every instance, between the
// destination's answer and the next one's first byte. Larger instances
// stream as before: at most two buffers of this size per worker.
const readAheadMax = 4 << 20

// readAhead is one instance being read in the background.
type readAhead struct {
	done chan struct{}
	data []byte // the whole copy, hash checked, once done and err is nil
	err  error
}

// readAhead starts reading r into buf, if it is small enough; else nil.
func (f *Forwarder) readAhead(r store.Instance, buf []byte) *readAhead {
	if r.Size > readAheadMax {
		return nil
	}
	ra := &readAhead{done: make(chan struct{})}
	go func() {
		defer close(ra.done)
		ra.data, ra.err = readWhole(f.ctx, f.deps.Store, r, buf)
	}()
	return ra
}

// wait returns the bytes read, or the error that stopped them.
func (ra *readAhead) wait() ([]byte, error) {
	<-ra.done
	return ra.data, ra.err
}

// readWhole reads a stored copy into buf (grown if needed) and returns it
// only once the store checked its hash: a damaged copy is an error
// (store.ErrCorrupt), reported by the store, before any byte is sent.
func readWhole(ctx context.Context, st Store, r store.Instance, buf []byte) ([]byte, error) {
	rc := st.OpenInstance(ctx, r)
	defer rc.Close()
	b := slices.Grow(buf[:0], int(r.Size))[:r.Size]
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", r.SOPInstanceUID, err)
	}
	// The read after the last byte is where the store compares the hash.
	if n, err := rc.Read(b[len(b):cap(b)]); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("%w: more than the %d bytes recorded (%d)", store.ErrCorrupt, r.Size, n)
		}
		return nil, fmt.Errorf("read %s: %w", r.SOPInstanceUID, err)
	}
	return b, nil
}

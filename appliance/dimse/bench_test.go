package dimse

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
)

// nullSink counts and drops: the benchmark measures the stack, not a disk.
type nullSink struct{}

func (nullSink) Write(p []byte) (int, error) { return len(p), nil }
func (nullSink) Close() Status               { return StatusSuccess }
func (nullSink) Abort(error)                 {}

// BenchmarkStoreLoopback measures C-STORE from our SCU to our SCP over
// loopback TCP, reporting MB/s and instances/s.
func BenchmarkStoreLoopback(b *testing.B) {
	for _, size := range []int{512 << 10, 10 << 10} {
		for _, pdu := range []uint32{16384, DefaultMaxPDU} {
			b.Run(fmt.Sprintf("%dKiB/pdu=%d", size>>10, pdu), func(b *testing.B) {
				addr := startServer(b, &Server{Policy: &StaticPolicy{}, Config: Config{MaxPDULength: pdu},
					Handlers: Handlers{Store: func(context.Context, *Association, *StoreRequest) StoreSink { return nullSink{} }}})
				a, err := Dial(context.Background(), addr, DialParams{CallingAE: "BENCH", CalledAE: "RELAIS",
					Proposals: storageProposals("1.2.840.10008.5.1.4.1.1.2")})
				if err != nil {
					b.Fatal(err)
				}
				defer a.Close()
				data := bytes.Repeat([]byte{0x5A}, size)
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					st, err := a.Store(context.Background(), StoreParams{SOPClassUID: "1.2.840.10008.5.1.4.1.1.2",
						SOPInstanceUID: "1.2.3." + strconv.Itoa(i), TransferSyntaxUID: ExplicitVRLittleEndian}, bytes.NewReader(data))
					if err != nil || st != StatusSuccess {
						b.Fatal(st, err)
					}
				}
				sec := b.Elapsed().Seconds()
				b.ReportMetric(float64(b.N)/sec, "instances/s")
			})
		}
	}
}

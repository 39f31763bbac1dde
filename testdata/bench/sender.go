package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/relais/relais/appliance/dimse"
	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/testdata/dcmgen"
)

// sendGenerated stores n small instances (64×64×16 bits, perStudy to a
// study), generated on the way, into the SCP at addr over parallel
// associations: tens of thousands of instances without a file each.
func sendGenerated(ctx context.Context, addr, calledAE string, n, perStudy, parallel int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for k := range parallel {
		wg.Go(func() {
			if err := sendRange(ctx, addr, calledAE, k*n/parallel, (k+1)*n/parallel, perStudy); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// sendRange sends instances from (included) to to (excluded) on one association.
func sendRange(ctx context.Context, addr, calledAE string, from, to, perStudy int) error {
	a, err := dimse.Dial(ctx, addr, dimse.DialParams{CallingAE: senderAET, CalledAE: calledAE,
		Proposals: []dimse.Proposal{{AbstractSyntax: dcmgen.CTImageStorage, TransferSyntaxes: []string{dcmgen.ExplicitVRLittleEndian}}}})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for i := from; i < to && ctx.Err() == nil; i++ {
		in := dcmgen.Instance{Rows: 64, Columns: 64, Seed: uint64(900000 + i/perStudy), InstanceNumber: i%perStudy + 1,
			StudyDescription: "relais bench scale"}.Defaults()
		buf.Reset()
		if _, err := in.Write(&buf); err != nil {
			a.Abort()
			return err
		}
		_, _, data, err := part10.ReadHeader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			a.Abort()
			return fmt.Errorf("generated instance %d: %w", i, err)
		}
		st, err := a.Store(ctx, dimse.StoreParams{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, TransferSyntaxUID: in.TransferSyntax}, data)
		if err != nil {
			return err
		}
		if st != dimse.StatusSuccess {
			a.Abort()
			return fmt.Errorf("C-STORE of instance %d: status 0x%04X", i, uint16(st))
		}
	}
	return a.Release(ctx)
}

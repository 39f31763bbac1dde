package header

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/relais/relais/appliance/part10"
	"github.com/relais/relais/testdata/dcmgen"
)

func parseGenerated(t *testing.T, in dcmgen.Instance) *Header {
	t.Helper()
	var buf bytes.Buffer
	if _, err := in.Defaults().Write(&buf); err != nil {
		t.Fatal(err)
	}
	m, _, br, err := part10.ReadHeader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := io.ReadAll(br)
	h, err := Parse(m.TransferSyntaxUID, ds)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestDiffListsChangedElementsBounded(t *testing.T) {
	base := dcmgen.Instance{Rows: 16, Columns: 16, Seed: 5, InstanceNumber: 1}
	old := parseGenerated(t, base)
	base.PatientName = "Roe^Jane"
	base.StudyDescription = strings.Repeat("long ", 30)
	base.Seed = 6 // other pixels too: not compared
	base.SOPInstanceUID, base.StudyInstanceUID, base.SeriesInstanceUID = old.SOPInstanceUID, old.StudyInstanceUID, old.SeriesInstanceUID
	base.AccessionNumber = "ACC5"
	now := parseGenerated(t, base)

	changes, more := Diff(old, now, 10)
	if len(changes) != 2 || more != 0 {
		t.Fatalf("changes %+v, %d more", changes, more)
	}
	if c := changes[0]; c.TagString() != "(0008,1030)" || c.Name != "StudyDescription" || !strings.HasSuffix(c.New, "…") || len([]rune(c.New)) != MaxValue+1 {
		t.Fatalf("first change %+v", c)
	}
	if c := changes[1]; c.TagString() != "(0010,0010)" || c.Name != "PatientName" || c.Old != "Test^Patient" || c.New != "Roe^Jane" || c.Added || c.Removed {
		t.Fatalf("second change %+v", c)
	}
	if changes, more := Diff(old, now, 1); len(changes) != 1 || more != 1 {
		t.Fatalf("bounded to 1: %+v, %d more", changes, more)
	}
	delete(now.Values, 0x00100010)
	if changes, _ := Diff(old, now, 10); !changes[1].Removed {
		t.Fatalf("removed element: %+v", changes[1])
	}
	if changes, _ := Diff(now, old, 10); !changes[1].Added {
		t.Fatalf("added element: %+v", changes[1])
	}
}

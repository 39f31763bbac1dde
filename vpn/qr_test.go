package vpn

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQRIsASquareWithAQuietZone(t *testing.T) {
	key := mustKey(t).PublicKey().String()
	out, err := QR(key)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	width := utf8.RuneCountInString(lines[0])
	// A 44-character key needs version 4 at level M: 33 modules, plus the
	// quiet zone on both sides; two module rows per line.
	if width != 33+2*qrQuiet || len(lines) != (width+1)/2 {
		t.Fatalf("%d lines of %d cells:\n%s", len(lines), width, out)
	}
	for i, l := range lines {
		if utf8.RuneCountInString(l) != width {
			t.Fatalf("line %d is %d cells wide, want %d", i, utf8.RuneCountInString(l), width)
		}
	}
	if strings.Trim(lines[0], "█") != "" || strings.Trim(lines[len(lines)-1], "█▀") != "" {
		t.Fatalf("no quiet zone:\n%s", out)
	}
	// The finder pattern's dark top edge starts right after the margin.
	if r := []rune(lines[qrQuiet/2]); r[qrQuiet-1] != '█' || r[qrQuiet] == '█' {
		t.Fatalf("no finder pattern at the top left:\n%s", out)
	}
	if again, _ := QR(key); again != out {
		t.Fatal("not deterministic")
	}
}

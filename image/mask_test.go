package image

import (
	"strings"
	"testing"
)

func TestMaskWriterHidesThePasswordInGoksLines(t *testing.T) {
	var out strings.Builder
	m := NewMaskWriter(&out, testPassword)
	// As gok writes: in pieces, the URL split across writes.
	for _, p := range []string{"Updating http://gokrazy:" + testPassword[:5], testPassword[5:] + "@10.8.0.12:80/\n", "Device ready to use!\n", "Basic Z29rcmF6eTpxNy1Ya18ybVowcExyOXNUdzR2TjhiWWM= and no newline"} {
		if _, err := m.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Contains(got, testPassword) || strings.Contains(got, "Z29rcmF6eTpxNy1Ya18ybVowcExyOXNUdzR2TjhiWWM=") {
		t.Fatalf("password left in %q", got)
	}
	want := "Updating http://gokrazy:" + Masked + "@10.8.0.12:80/\nDevice ready to use!\nBasic " + Masked + " and no newline"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

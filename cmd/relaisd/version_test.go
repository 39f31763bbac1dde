package main

import (
	"strings"
	"testing"
)

func TestVersionLineNamesTheImage(t *testing.T) {
	if got := versionLine("0123456789ab"); !strings.Contains(got, "relaisd dev, image 0123456789ab, go1.") {
		t.Errorf("versionLine = %q", got)
	}
	if got := versionLine(""); !strings.Contains(got, "image none") {
		t.Errorf("versionLine outside an image = %q", got)
	}
}

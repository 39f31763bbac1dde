package header

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// MaxValue is how much of a value a Change shows; longer ones are cut.
const MaxValue = 64

// Change is a top-level text element whose value differs between two
// headers, for a person comparing two copies of an instance.
type Change struct {
	Tag      uint32 // group<<16 | element
	Name     string // the keyword; "" for private and unknown elements
	Old, New string // cut at MaxValue characters
	Added    bool   // absent from the old header
	Removed  bool   // absent from the new header
}

// TagString formats the tag as (gggg,eeee).
func (c Change) TagString() string { return fmt.Sprintf("(%04X,%04X)", c.Tag>>16, c.Tag&0xFFFF) }

// Diff lists, in tag order, up to max elements of Values that differ
// between old and new, and how many more differ. Only what Parse read is
// compared: top-level text elements before Pixel Data.
func Diff(old, new *Header, max int) (changes []Change, more int) {
	tags := slices.Sorted(maps.Keys(old.Values))
	for t := range new.Values {
		if _, ok := old.Values[t]; !ok {
			tags = append(tags, t)
		}
	}
	slices.Sort(tags)
	for _, t := range tags {
		o, inOld := old.Values[t]
		n, inNew := new.Values[t]
		if inOld && inNew && o == n {
			continue
		}
		if len(changes) == max {
			more++
			continue
		}
		changes = append(changes, Change{Tag: t, Name: keyword(t), Old: cut(o), New: cut(n), Added: !inOld, Removed: !inNew})
	}
	return changes, more
}

func keyword(t uint32) string {
	info, err := tag.Find(tag.Tag{Group: uint16(t >> 16), Element: uint16(t)})
	if err != nil {
		return ""
	}
	return info.Keyword
}

// cut shortens s to MaxValue characters, on a character boundary.
func cut(s string) string {
	if utf8.RuneCountInString(s) <= MaxValue {
		return s
	}
	n := 0
	for i := range s {
		if n == MaxValue {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

package control

import "strings"

// The daemon reports some failures as text (an echo's, a destination's
// last error, an alarm): a plain sentence that says what to do, then the
// technical cause in brackets, last:
//
//	nothing answers at PACS at 10.8.0.1:104: is the PACS running, is the port right? [dial tcp 10.8.0.1:104: connect: connection refused]
//
// People read the sentence; the console shows the cause on request.

// WithCause writes a sentence followed by its technical cause.
func WithCause(sentence string, cause error) string {
	if cause == nil {
		return sentence
	}
	return sentence + " [" + cause.Error() + "]"
}

// SplitCause takes WithCause's text apart; cause is "" when text has none.
// Brackets inside the cause (an IPv6 address: [::1]:104) are matched.
func SplitCause(text string) (sentence, cause string) {
	if !strings.HasSuffix(text, "]") {
		return text, ""
	}
	depth := 0
	for i := len(text) - 1; i >= 0; i-- {
		switch text[i] {
		case ']':
			depth++
		case '[':
			depth--
			if depth == 0 {
				if i == 0 || text[i-1] != ' ' {
					return text, ""
				}
				return strings.TrimSpace(text[:i]), text[i+1 : len(text)-1]
			}
		}
	}
	return text, ""
}

package dimse

import "fmt"

// Status is a DIMSE status code (PS3.7 Annex C).
type Status uint16

const (
	StatusSuccess Status = 0x0000

	StatusWarningCoercion          Status = 0xB000
	StatusWarningElementsDiscarded Status = 0xB007

	StatusOutOfResources           Status = 0xA700 // C-STORE: refused, out of resources
	StatusDataSetDoesNotMatchClass Status = 0xA900 // C-STORE: data set does not match SOP class
	StatusCannotUnderstand         Status = 0xC000 // C-STORE: cannot understand

	StatusProcessingFailure     Status = 0x0110
	StatusDuplicateSOPInstance  Status = 0x0111
	StatusNoSuchSOPInstance     Status = 0x0112
	StatusInvalidArgumentValue  Status = 0x0115
	StatusNoSuchSOPClass        Status = 0x0118
	StatusClassInstanceConflict Status = 0x0119
	StatusNoSuchActionType      Status = 0x0123
	StatusNotAuthorized         Status = 0x0124
	StatusDuplicateInvocation   Status = 0x0210
	StatusUnrecognizedOperation Status = 0x0211
	StatusMistypedArgument      Status = 0x0212
)

// Success reports whether s is a success or a warning: the operation was performed.
func (s Status) Success() bool {
	return s == StatusSuccess || s&0xF000 == 0xB000 || s == 0x0001 || s == 0x0107 || s == 0x0116
}

func (s Status) String() string {
	switch s {
	case StatusSuccess:
		return "success"
	case StatusOutOfResources:
		return "out of resources (0xA700)"
	case StatusDataSetDoesNotMatchClass:
		return "data set does not match SOP class (0xA900)"
	case StatusCannotUnderstand:
		return "cannot understand (0xC000)"
	case StatusProcessingFailure:
		return "processing failure (0x0110)"
	case StatusNoSuchSOPClass:
		return "no such SOP class (0x0118)"
	case StatusUnrecognizedOperation:
		return "unrecognized operation (0x0211)"
	}
	switch {
	case s&0xF000 == 0xB000:
		return fmt.Sprintf("warning (0x%04X)", uint16(s))
	case s&0xFF00 == 0xFE00:
		return fmt.Sprintf("cancel (0x%04X)", uint16(s))
	}
	return fmt.Sprintf("failure (0x%04X)", uint16(s))
}

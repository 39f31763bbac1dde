package dimse

import "github.com/suyashkumar/dicom/pkg/uid"

// Well-known UIDs the stack itself needs (PS3.6 Annex A).
const (
	ApplicationContext = "1.2.840.10008.3.1.1.1"

	ImplicitVRLittleEndian         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian            = "1.2.840.10008.1.2.2"

	VerificationSOPClass = "1.2.840.10008.1.1"
	// Storage Commitment Push Model (PS3.4 Annex J) and its well-known instance.
	StorageCommitmentSOPClass    = "1.2.840.10008.1.20.1"
	StorageCommitmentSOPInstance = "1.2.840.10008.1.20.1.1"

	// ImplementationClassUID identifies Relais in A-ASSOCIATE PDUs and in the
	// Part 10 header of stored instances; a 2.25 (UUID-derived) UID. Never
	// change it: stored copies are compared byte for byte, header included.
	ImplementationClassUID = "2.25.233920837491093547136512283018416207441"
	// ImplementationVersionName is at most 16 characters.
	ImplementationVersionName = "RELAIS_1"
)

// IsStorageSOPClass is a coarse test for storage SOP classes: they all live
// under 1.2.840.10008.5.1.4.1.1 (PS3.4 Annex B), as do the many private and
// retired ones modalities still send.
func IsStorageSOPClass(uid string) bool {
	const prefix = "1.2.840.10008.5.1.4.1.1."
	return len(uid) > len(prefix) && uid[:len(prefix)] == prefix
}

// UIDName is a UID's name from PS3.6 ("Deflated Explicit VR Little
// Endian"), for people; an unknown UID is returned as it is.
func UIDName(u string) string {
	if info, err := uid.Lookup(u); err == nil && info.Name != "" {
		return info.Name
	}
	return u
}

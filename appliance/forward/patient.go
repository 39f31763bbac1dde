package forward

// Patient data in events. The event log on the box (owner-only) may name
// the patient, so the technician finds a study; the process log (stdout and
// stderr, which gokrazy shows on its status page to whoever has the update
// password) must not. So a message names the patient only by PatientToken,
// and the name travels in attrs[PatientAttr]: the event log puts it in, the
// process log leaves both out (appliance.event).
const (
	PatientToken = "{patient}"
	PatientAttr  = "patient"
)

// withPatient returns attrs with the patient's name, for the event log only.
func withPatient(attrs map[string]string, name string) map[string]string {
	attrs[PatientAttr] = name
	return attrs
}

package switchboard

// Reason says why a delivery was given up: dead-lettered (the Sb-Reason
// header of its dead letter, Attempt.Reason) or dropped. The deliverer
// writes it and the registry reads it (auto-disable counts some of them as
// failures of the receiver), so the values are declared once, here.
type Reason string

// Reasons a delivery is dead-lettered or dropped. The values are on the
// wire (dead letters, attempt records, the API's reason filter) and in
// the deliveries_dead_lettered metric's label: never rename one.
const (
	ReasonGone             Reason = "gone"              // the receiver answered 410 Gone
	ReasonRefused          Reason = "target_refused"    // the SSRF guard refused the receiver's address
	ReasonRetriesExhausted Reason = "retries_exhausted" // max_retries failed retries after the first attempt
	ReasonInactive         Reason = "webhook_inactive"  // the webhook is not active (inactive, too_many_errors)
	ReasonInvalid          Reason = "webhook_invalid"   // the webhook's KV value cannot be used
	ReasonDeleted          Reason = "webhook_deleted"   // the webhook was deleted: dropped, not dead-lettered
	ReasonUnknown          Reason = "webhook_unknown"   // not in the worker's index after a few tries, and not known deleted
	ReasonMalformed        Reason = "malformed"         // the delivery message lacks what an attempt needs
)

// CountsAsFailure reports whether a delivery given up for r is a failure
// of the receiver (retries spent, gone, refused address...). Reasons on
// Switchboard's side are not: a stopped webhook parks its deliveries
// (ReasonInactive), an unusable KV value or delivery message can never be
// sent; otherwise the deliveries parked by a stop would count towards the
// next one.
func (r Reason) CountsAsFailure() bool {
	switch r {
	case ReasonInactive, ReasonInvalid, ReasonMalformed:
		return false
	}
	return true
}

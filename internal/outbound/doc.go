// Package outbound makes one attempt: it builds a webhook's signed request
// (Endpoint), sends it through the guarded client (NewHTTPClient: SSRF
// guard, no proxy, no redirects), reads the start of the answer and says
// what came back (Send, Error). The deliverer's attempts and the
// registry's test sends both go through it, so that a test send is what a
// delivery is: the same request byte for byte, the same excerpt of the
// answer, the same scrubbing of the URL out of errors.
//
// What to do after a failure (retry, dead-letter, open a breaker) is not
// decided here: that is the consumer's (decide, judge).
package outbound

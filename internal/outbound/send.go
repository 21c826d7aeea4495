package outbound

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// How much of an answer is read: the start of its body is kept (the
// attempt log, a dead letter's error, a test send's answer); up to
// maxDrain bytes are read and discarded so that the connection can be
// reused; a longer body closes the connection instead, which is cheaper
// than reading on.
const (
	// MaxExcerpt is the most bytes of a receiver's body an attempt keeps,
	// and the least size of Send's buffer.
	MaxExcerpt = 256
	maxDrain   = 64 << 10
)

// Answer is what a receiver sent back to one request.
type Answer struct {
	// Status is the HTTP status; 0 when the receiver did not answer.
	Status int
	// Body is the start of the body: at most MaxExcerpt bytes, made
	// Printable.
	Body string
	// ReadErr is why the body could not be read to MaxExcerpt bytes or its
	// end, without the URL; nil when it could.
	ReadErr error
}

// Send makes one attempt: it sends req through client (NewHTTPClient's
// kind; the deadline is req's context), reads the excerpt of the answer
// into buf, drains and closes the body. It returns nil for a 2xx and an
// *Error for any other answer or none; a 2xx whose body could not be read
// is still a success, with Answer.ReadErr set. Errors never carry the URL,
// which may hold a query-string token, and go to logs and attempt records.
//
// buf is scratch, reused by the caller across attempts so that a
// delivery's answer allocates nothing but its excerpt; it must hold at
// least MaxExcerpt bytes, and a larger one drains in fewer reads.
func Send(client *http.Client, req *http.Request, buf []byte) (Answer, error) {
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, &Error{Err: withoutURL(err)}
	}
	a := Answer{Status: resp.StatusCode}
	n, rerr := io.ReadFull(resp.Body, buf[:MaxExcerpt])
	a.Body = Printable(buf[:n])
	drain(resp.Body, buf)
	resp.Body.Close()
	if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
		a.ReadErr = withoutURL(rerr)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return a, nil
	}
	return a, &Error{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp, time.Now()), Body: a.Body}
}

// drain reads and discards up to maxDrain bytes of a response body, so
// that its connection can be reused; past that, closing the body drops the
// connection. Unlike io.CopyN, it allocates nothing.
func drain(body io.Reader, buf []byte) {
	for n := 0; n < maxDrain; {
		m, err := body.Read(buf)
		n += m
		if err != nil {
			return
		}
	}
}

// withoutURL drops the *url.Error layer of a client error: its URL may
// carry a query-string token, and the error goes to logs, attempt records,
// dead letters and test sends' answers.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Printable makes b safe for a NATS header value, a log line and a JSON
// answer: valid UTF-8 without control characters.
func Printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

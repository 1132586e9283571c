package h1

import (
	"bufio"
	"bytes"
	"time"

	"github.com/valyala/fasthttp"
)

// DateSeed puts a Date field into a response header. fasthttp keeps Date
// to itself: Set and Add drop it, and a server without NoDefaultDate
// writes the current date on every response. A stored response must keep
// the Date it was given (RFC 9110 §6.6.1: the time it was originated; only
// Age says how old it is, RFC 9111 §4), so the node's servers set
// NoDefaultDate and every answer carries the Date its header holds; and
// the one way into a header for a Date is to be parsed. Seed parses a
// header of that one field, which costs a cache hit about a quarter of its
// CPU time. A DateSeed is not safe for concurrent use.
type DateSeed struct {
	buf []byte
	r   bytes.Reader
	br  *bufio.Reader
}

// maxSeedDate bounds a Date value the seed takes (an HTTP-date has at
// most 33 bytes); a longer one is no date.
const maxSeedDate = 64

// NewDateSeed returns a DateSeed.
func NewDateSeed() *DateSeed {
	s := &DateSeed{buf: make([]byte, 0, 128)}
	s.br = bufio.NewReaderSize(&s.r, 128)
	return s
}

// Seed resets h to a header holding only Date: date, or the date of now
// (unix nanoseconds) when date is empty or too long. It must come before
// anything else is set in h: parsing resets the header. h is then a 200
// until the caller sets its status. It does not allocate.
//
// bodied says the answer will have a status that carries a body: the seed
// then declares "Content-Length: 0", which spares fasthttp's parser its
// look for "Connection: upgrade" and which writing the body replaces.
// Otherwise (a 304, whose Content-Length would describe the 200 it stands
// for, RFC 9110 §8.6) it declares no length: parsed as a 304's, that leaves
// neither a length nor "close" behind.
func (s *DateSeed) Seed(h *fasthttp.ResponseHeader, date []byte, now int64, bodied bool) {
	if bodied {
		s.buf = append(s.buf[:0], "HTTP/1.1 200 K\r\nContent-Length: 0\r\nDate: "...)
	} else {
		s.buf = append(s.buf[:0], "HTTP/1.1 304 N\r\nDate: "...)
	}
	if len(date) == 0 || len(date) > maxSeedDate {
		s.buf = fasthttp.AppendHTTPDate(s.buf, time.Unix(0, now))
	} else {
		s.buf = append(s.buf, date...)
	}
	s.buf = append(s.buf, "\r\n\r\n"...)
	s.r.Reset(s.buf)
	s.br.Reset(&s.r)
	if err := h.Read(s.br); err != nil {
		// Not reached: dates are checked before they are stored or seeded,
		// and the rest is ours. Answer without a Date rather than not at all.
		h.Reset()
	}
	h.SetStatusCode(fasthttp.StatusOK)
	h.SetStatusMessage(nil)
	h.SetProtocol(nil)
}

// SetDate resets h to a header holding only the Date of t (see DateSeed),
// for an answer a server with NoDefaultDate makes itself, off any hot
// path: it allocates a seed. It must come before anything else is set in
// h.
func SetDate(h *fasthttp.ResponseHeader, t time.Time) {
	NewDateSeed().Seed(h, nil, t.UnixNano(), true)
}

package proxy

import (
	"io"

	"github.com/valyala/fasthttp"
)

// streamCloser is the body of a relayed response (Response.BodyStream): it
// releases the origin response once fasthttp has written the body to the
// client, or given up, and counts what fasthttp read from it to write.
type streamCloser struct {
	io.Reader
	resp *fasthttp.Response
	n    int64
	done func(n int64)
}

func (s *streamCloser) Read(p []byte) (int, error) {
	n, err := s.Reader.Read(p)
	s.n += int64(n)
	return n, err
}

func (s *streamCloser) Close() error {
	closeResponse(s.resp)
	if s.done != nil {
		s.done(s.n)
	}
	return nil
}

// OnClose has fn called once fasthttp is done with the body, with the bytes
// it read from it: the body's bytes written to the client (an access log's
// byte count). A response body is written after the handler returns, so
// only then is that known. fn runs on the connection's goroutine.
func (s *streamCloser) OnClose(fn func(n int64)) { s.done = fn }

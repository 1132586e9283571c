package ceiling

import (
	"testing"

	"github.com/valyala/fasthttp"
)

func TestServe(t *testing.T) {
	h := New(map[string]Body{"/a?size=3": {ContentType: "text/plain", Bytes: []byte("abc")}})
	tests := []struct {
		uri        string
		wantStatus int
		wantBody   string
	}{
		{"/a?size=3", 200, "abc"},
		{"/a", 404, ""},
		{"/a?size=4", 404, ""},
	}
	for _, tt := range tests {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(tt.uri)
		h.Serve(&ctx)
		if got := ctx.Response.StatusCode(); got != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.uri, got, tt.wantStatus)
		}
		if got := string(ctx.Response.Body()); got != tt.wantBody {
			t.Errorf("%s: body %q, want %q", tt.uri, got, tt.wantBody)
		}
		if tt.wantStatus == 200 && string(ctx.Response.Header.ContentType()) != "text/plain" {
			t.Errorf("%s: content type %q", tt.uri, ctx.Response.Header.ContentType())
		}
	}
}

func BenchmarkServe(b *testing.B) {
	h := New(map[string]Body{"/hit": {ContentType: "text/plain", Bytes: make([]byte, 1024)}})
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/hit")
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h.Serve(&ctx)
	}
}

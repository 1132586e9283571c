package origin

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url  string
		want string // "" accepts; else the reason the error must give
	}{
		{"http://127.0.0.1:9000", ""},
		{"https://example.com/", ""},
		{"http://[::1]:8080", ""},
		{"HTTP://example.com", ""}, // url.Parse lower-cases the scheme
		{"", "want an http:// or https:// URL"},
		{"example.com:8080", "want an http:// or https:// URL"},
		{"127.0.0.1:9000", "not a URL"},
		{"ftp://example.com", "want an http:// or https:// URL"},
		{"http://", "missing host"},
		{"http://:80", "missing host"},
		{"http://user@example.com", "must not have user info"},
		{"http://user:pw@example.com", "must not have user info"},
		{"http://example.com/app", "must not have a path"},
		{"http://example.com//", "must not have a path"},
		{"http://example.com?x=1", "must not have a query"},
		{"http://example.com/?", "must not have a query"},
		{"http://example.com/#top", "must not have a fragment"},
		{"http://example.com#", "must not have a fragment"},
		{"http://example.com:0", `port "0" is not a number in 1..65535`},
		{"http://example.com:99999", `port "99999" is not a number in 1..65535`},
		{"http://[::1", "not a URL: missing ']' in host"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := ParseURL(tt.url)
			if tt.want == "" {
				if err != nil || u == nil {
					t.Fatalf("ParseURL(%q) = %v, %v; want a URL", tt.url, u, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseURL(%q) = %v; want an error %q", tt.url, u, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseURL(%q) error %q; want %q", tt.url, err, tt.want)
			}
			if strings.Contains(err.Error(), tt.url) && tt.url != "" {
				t.Errorf("error %q repeats the URL: the caller names it", err)
			}
		})
	}
}

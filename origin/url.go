package origin

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ParseURL checks an origin base URL and returns it parsed: scheme http or
// https, a host, optionally a port in 1..65535, and nothing else but an
// optional "/" path. Requests keep their own path and query, so a base path
// or query would be silently dropped; user info would never be sent (Fetch
// does not invent credentials). It is the one rule for the origin URL:
// NewClient applies it, and so does the configuration, which can then name
// the setting and where its value came from. Errors give the reason only;
// the caller names the value.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("want an http:// or https:// URL")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("missing host")
	case u.User != nil:
		return nil, errors.New("must not have user info")
	case u.Path != "" && u.Path != "/":
		return nil, errors.New("must not have a path")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("must not have a query")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, errors.New("must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("port %q is not a number in 1..65535", p)
		}
	}
	return u, nil
}

package cache

import (
	"strings"
	"testing"
)

func TestPurgeValidate(t *testing.T) {
	cases := []struct {
		p    Purge
		want string // "" for valid
	}{
		{Purge{URL: "/a"}, ""},
		{Purge{Tag: "t"}, ""},
		{Purge{Prefix: "/img/"}, ""},
		{Purge{All: true}, ""},
		{Purge{}, "give one of"},
		{Purge{URL: "/a", Tag: "t"}, "only one"},
		{Purge{URL: "a"}, "must start with /"},
		{Purge{Prefix: "img"}, "must start with /"},
	}
	for _, tc := range cases {
		err := tc.p.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: Validate() = %v, want %q", tc.p, err, tc.want)
		}
	}
}

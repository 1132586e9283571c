// Package opt holds the one convention options structs here follow for
// their numbers: zero or negative means "use the documented default". An
// option that gives a negative value a meaning of its own ("negative
// disables") must not go through Or; it says so beside the field.
package opt

import "time"

// Or returns v, or def when v is zero or negative.
func Or[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

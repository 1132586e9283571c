package opt

import (
	"testing"
	"time"
)

func TestOr(t *testing.T) {
	const def = 3 * time.Second
	tests := []struct {
		name string
		v    time.Duration
		want time.Duration
	}{
		{"zero", 0, def},
		{"negative", -time.Nanosecond, def},
		{"set", time.Nanosecond, time.Nanosecond},
		{"set above default", time.Hour, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Or(tt.v, def); got != tt.want {
				t.Errorf("Or(%v, %v) = %v; want %v", tt.v, def, got, tt.want)
			}
		})
	}
	if got := Or(0, 256); got != 256 {
		t.Errorf("Or(0, 256) = %d; want 256", got)
	}
	if got := Or(int64(-1), 64<<20); got != 64<<20 {
		t.Errorf("Or(-1, 64 MiB) = %d; want 64 MiB", got)
	}
}

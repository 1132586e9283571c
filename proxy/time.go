package proxy

import "time"

func unixTime(nanos int64) time.Time { return time.Unix(0, nanos) }

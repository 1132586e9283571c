package config_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/ringcache/ringcache/config"
)

func ExampleLoad() {
	// In main: config.Load(os.Args[2:], os.Environ(), os.Stdout).
	cfg, err := config.Load(
		[]string{"--origin", "https://origin.example.com", "--cache-size", "1GiB"},
		[]string{"RINGCACHE_CACHE_SIZE=512MiB", "RINGCACHE_STORE=lru", "HOME=/root"},
		os.Stdout)
	if errors.Is(err, config.ErrHelp) {
		return // usage printed; exit 0
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	// The flag beats the environment; the environment beats the default.
	fmt.Println(config.FormatBytes(cfg.CacheSize), cfg.Store, cfg.Ring)

	_, err = config.Load([]string{"--origin=https://origin.example.com", "--store=arc"}, nil, nil)
	fmt.Println(err)
	// Output:
	// 1GiB lru hashring
	// invalid store "arc" (flag --store): want ristretto or lru
}

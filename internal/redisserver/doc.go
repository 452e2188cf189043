// Package redisserver runs a real redis-server for tests: on a free
// loopback port, in its own temporary directory, stopped by PID when the
// test ends.
//
// It is for tests only. It never skips: a missing redis-server fails the
// test and says how to install it. It never binds anything but 127.0.0.1
// and never touches a Redis it did not start.
package redisserver

// Package e2e holds end-to-end tests that build the loyalty binary and run a real hub and real
// store agents as separate processes, talking over websockets on 127.0.0.1.
package e2e

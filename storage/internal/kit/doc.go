// Package kit holds what the verdict store backends (storage/bolt,
// storage/redis) share: argument checks, the field a verdict lives under,
// decoding that refuses a misfiled record, sorting, lease tokens and
// release watchers. It exists so the two backends check and answer alike.
// It must never hold a backend's own logic or be imported from outside
// storage.
package kit

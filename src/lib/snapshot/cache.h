/*
 * The boot cache directory's upkeep. Each configuration adds one entry (a few tens of MB) and
 * nothing else ever removes it, so after each save the directory keeps only its most recently
 * used entries; a restore marks its entry used (its modification time). A save that was killed
 * part-way leaves its temporary file behind; those are removed once they are old enough that
 * no save can still be writing them.
 */
#ifndef COVE_SNAPSHOT_CACHE_H
#define COVE_SNAPSHOT_CACHE_H

/* Entries a boot cache directory keeps. */
#define SNAP_CACHE_MAX_ENTRIES 16
/* Age after which a temporary file of a save counts as abandoned. */
#define SNAP_CACHE_STALE_TEMP_SECONDS 3600

/* Marks the entry at path used now. */
void snap_cache_touch(const char *path);

/*
 * Removes from dir all but the max_entries most recently used entries ("<16 hex>.snap") and
 * the abandoned temporary files ("<entry>.XXXXXX"). Other files are left alone. Returns how
 * many files it removed, or a negative errno when dir cannot be read.
 */
int snap_cache_prune(const char *dir, unsigned max_entries);

#endif

# Present so that python/embed.go's //go:embed pattern matches before the
# Python worker's own modules exist; it defines nothing and is never imported.

/* render: renders a small configuration from KEY=VALUE arguments and
 * publishes it with libatomsync, the way a program that fetches secrets
 * or renders templates would.
 *
 *   cc -o render render.c $(pkg-config --cflags --libs atomsync)
 *   ./render /run/app/config listen=8080 workers=4
 *
 * The target then holds app.conf (every KEY = VALUE line) and one file
 * per key under keys/, each behind target/NAME -> ..data/NAME.  A second
 * run with the same arguments writes nothing. */
#define _GNU_SOURCE /* asprintf */
#include <atomsync.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 64

int main(int argc, char *argv[])
{
	struct atomsync_file files[1 + MAX_KEYS];
	char *names[MAX_KEYS], *conf = NULL;
	size_t n = 0, conf_len = 0;
	FILE *cf = open_memstream(&conf, &conf_len);
	int keys = argc - 2, status = 1;

	if (argc < 2 || keys > MAX_KEYS || cf == NULL) {
		fprintf(stderr, "usage: render TARGET [KEY=VALUE...] (at most %d)\n",
			MAX_KEYS);
		return 2;
	}
	/* Render: the whole file, then one file per key. */
	fprintf(cf, "# rendered by render\n");
	for (int i = 0; i < keys; i++) {
		const char *kv = argv[2 + i], *eq = strchr(kv, '=');
		if (eq == NULL || eq == kv) {
			fprintf(stderr, "render: %s: not KEY=VALUE\n", kv);
			return 2;
		}
		fprintf(cf, "%.*s = %s\n", (int)(eq - kv), kv, eq + 1);
		if (asprintf(&names[i], "keys/%.*s", (int)(eq - kv), kv) < 0)
			return 1;
		files[1 + i] = (struct atomsync_file){names[i], eq + 1,
						      strlen(eq + 1), 0600};
	}
	fclose(cf);
	files[0] = (struct atomsync_file){"app.conf", conf, conf_len, 0644};
	n = 1 + (size_t)keys;

	/* Publish: all of it at once, or nothing. */
	struct atomsync_writer *w = NULL;
	const char *before = NULL;
	char *prev = NULL;
	if (atomsync_writer_open(argv[1], NULL, &w) == 0) {
		before = atomsync_writer_generation(w);
		prev = before ? strdup(before) : NULL;
		if (atomsync_write(w, files, n) == 0) {
			const char *gen = atomsync_writer_generation(w);
			printf("%s %s\n",
			       prev && strcmp(prev, gen) == 0 ? "unchanged"
							      : "published",
			       gen);
			status = 0;
		}
	}
	if (status != 0)
		fprintf(stderr, "render: %s\n",
			w ? atomsync_writer_error(w) : "out of memory");
	atomsync_writer_close(w);
	for (int i = 0; i < keys; i++)
		free(names[i]);
	free(prev);
	free(conf);
	return status;
}

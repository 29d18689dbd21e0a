/* A store: a view of it keeps what it writes to itself, and a view made
 * the store's content writes to it only the pages it wrote. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "testutil.h"

/* The bytes store.c writes, and whether the pagemap may be opened. */
static size_t written;
static int no_pagemap;

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t rc = __real_pwrite(fd, buf, n, off);
	if (rc > 0)
		written += (size_t)rc;
	return rc;
}

int __real_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	int mode = va_arg(ap, int);
	va_end(ap);
	if (no_pagemap && strcmp(path, "/proc/self/pagemap") == 0) {
		errno = ENOENT;
		return -1;
	}
	return __real_open(path, flags, mode);
}

#define PAGES 64

static size_t page;

/* A store of PAGES pages, page k filled with the byte k. */
static struct store *filled(char **map)
{
	size_t len = PAGES * page;
	char *src = malloc(len);
	struct store *x = NULL;

	ck_assert_ptr_nonnull(src);
	for (size_t k = 0; k < PAGES; k++)
		memset(src + k * page, (int)k, page);
	ck_assert_int_eq(store_copy(src, len, len, &x, (void **)map), 0);
	free(src);
	return x;
}

static void assert_pages(const char *m, size_t n, const char *what,
			 int (*want)(size_t k))
{
	for (size_t k = 0; k < n; k++)
		for (size_t b = 0; b < page; b += page / 4)
			if (m[k * page + b] != (char)want(k))
				ck_abort_msg("%s: page %zu holds %d, not %d",
					     what, k, m[k * page + b], want(k));
}

static int as_filled(size_t k)
{
	return (int)k;
}

/* Pages 3, 7 and 8 written with 0x70 + k. */
static int as_written(size_t k)
{
	return k == 3 || k == 7 || k == 8 ? 0x70 + (int)k : (int)k;
}

static void write_pages(char *v)
{
	static const size_t which[] = {3, 7, 8};
	for (size_t i = 0; i < 3; i++)
		memset(v + which[i] * page, 0x70 + (int)which[i], page);
}

static void setup(void)
{
	page = (size_t)sysconf(_SC_PAGESIZE);
	written = 0;
	no_pagemap = 0;
}

START_TEST(test_a_view_keeps_its_writes_to_itself)
{
	char *m, *v, *w;
	struct store *x = filled(&m);

	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&v), 0);
	assert_pages(v, PAGES, "view", as_filled);
	write_pages(v);
	assert_pages(v, PAGES, "view written", as_written);
	/* Neither the store nor another view sees them. */
	assert_pages(m, PAGES, "store", as_filled);
	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&w), 0);
	assert_pages(w, PAGES, "second view", as_filled);
	store_unmap(x, w, PAGES * page);
	store_unmap(x, v, PAGES * page);
	store_unmap(x, m, PAGES * page);
}
END_TEST

/* A record lists a source's files: its memfd is private (0600), not
 * memfd_create()'s 0777, should anyone reach it by a /proc path. */
START_TEST(test_a_record_is_private)
{
	char *m;
	struct store *x = filled(&m);
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int found = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		char *p, to[256];
		struct stat st;
		ck_assert_int_gt(asprintf(&p, "/proc/self/fd/%s", de->d_name), 0);
		ssize_t n = readlink(p, to, sizeof(to) - 1);
		to[n > 0 ? n : 0] = '\0';
		if (strstr(to, "memfd:atomsync-record")) {
			ck_assert_int_eq(stat(p, &st), 0);
			ck_assert_uint_eq(st.st_mode & 07777, 0600);
			found++;
		}
		free(p);
	}
	closedir(d);
	ck_assert_int_gt(found, 0);
	store_unmap(x, m, PAGES * page);
}
END_TEST

/* A page both the store's mapping and a view map would count twice in
 * the resident set: the store's are let go (the memfd keeps them) when a
 * view is made, and come back as they are read. */
START_TEST(test_a_view_and_the_store_map_each_page_once)
{
	char *m, *v;
	struct store *x = filled(&m);

	store_populate(m, PAGES * page);
	assert_pages(m, PAGES, "store", as_filled);
	ck_assert_uint_eq(tu_pages_present(m, PAGES), PAGES);
	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&v), 0);
	ck_assert_uint_eq(tu_pages_present(v, PAGES), PAGES);
	ck_assert_uint_eq(tu_pages_present(m, PAGES), 0);
	write_pages(v);
	assert_pages(m, PAGES, "store read again", as_filled);
	assert_pages(v, PAGES, "view", as_written);
	store_unmap(x, v, PAGES * page);
	store_unmap(x, m, PAGES * page);
}
END_TEST

/* A view of a few pages maps only what it touches, and the store's
 * mapping keeps what it had; store_let_go() then unmaps the store's whole
 * pages of a range, and no others, without losing them. */
START_TEST(test_a_view_of_a_few_pages_maps_them_as_touched)
{
	char *m, *v;
	struct store *x = filled(&m);

	store_populate(m, PAGES * page);
	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_FEW,
				    (void **)&v),
			 0);
	ck_assert_uint_eq(tu_pages_present(m, PAGES), PAGES);
	ck_assert_uint_eq(tu_pages_present(v, PAGES), 0);
	/* A write maps the one page it copies (a read may map its
	 * neighbours too: the kernel's fault-around). */
	write_pages(v);
	ck_assert_uint_eq(tu_pages_present(v, PAGES), 3);
	assert_pages(v, PAGES, "view", as_written);
	ck_assert_uint_eq(tu_pages_present(m, PAGES), PAGES);
	/* Pages 10 to 19: [10.5, 20) holds 11 to 19 whole, and past the
	 * mapping's end is nothing. */
	store_let_go(x, 10 * page + page / 2, 20 * page);
	ck_assert_uint_eq(tu_pages_present(m, PAGES), PAGES - 9);
	ck_assert_uint_eq(tu_pages_present(m + 10 * page, 1), 1);
	ck_assert_uint_eq(tu_pages_present(m + 11 * page, 9), 0);
	store_let_go(x, 0, SIZE_MAX);
	ck_assert_uint_eq(tu_pages_present(m, PAGES), 0);
	assert_pages(m, PAGES, "store read again", as_filled);
	store_unmap(x, v, PAGES * page);
	store_unmap(x, m, PAGES * page);
}
END_TEST

static int zero_past(size_t k)
{
	return k < PAGES ? (int)k : 0;
}

START_TEST(test_a_view_past_the_end_holds_zeros)
{
	char *m, *v;
	struct store *x = filled(&m);

	ck_assert_int_eq(store_view(x, 2 * PAGES * page, STORE_READS_ALL, (void **)&v), 0);
	assert_pages(v, 2 * PAGES, "longer view", zero_past);
	/* Writable there too. */
	memset(v + (2 * PAGES - 1) * page, 9, page);
	ck_assert_int_eq(v[(2 * PAGES - 1) * page], 9);
	store_unmap(x, m, PAGES * page);
	store_unmap(x, v, 2 * PAGES * page);
}
END_TEST

START_TEST(test_absorb_writes_only_the_pages_the_view_wrote)
{
	char *m, *v, *n, *w;
	struct store *x = filled(&m);

	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&v), 0);
	write_pages(v);
	/* As the record it views is freed. */
	store_unmap(x, m, PAGES * page);
	written = 0;
	ck_assert_int_eq(store_absorb(x, v, PAGES * page, (void **)&n), 0);
	ck_assert_uint_eq(written, 3 * page);
	assert_pages(n, PAGES, "absorbed", as_written);
	/* The store's now: the next view starts from it. */
	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&w), 0);
	assert_pages(w, PAGES, "next view", as_written);
	store_unmap(x, w, PAGES * page);
	store_unmap(x, n, PAGES * page);
}
END_TEST

START_TEST(test_absorb_without_a_pagemap_writes_every_page)
{
	char *m, *v, *n;
	struct store *x = filled(&m);

	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&v), 0);
	write_pages(v);
	store_unmap(x, m, PAGES * page);
	no_pagemap = 1;
	written = 0;
	ck_assert_int_eq(store_absorb(x, v, PAGES * page, (void **)&n), 0);
	ck_assert_uint_eq(written, PAGES * page);
	assert_pages(n, PAGES, "absorbed", as_written);
	store_unmap(x, n, PAGES * page);
}
END_TEST

START_TEST(test_absorb_is_refused_while_another_mapping_lives)
{
	char *m, *v;
	struct store *x = filled(&m);

	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&v), 0);
	write_pages(v);
	ck_assert(!store_alone(x));
	void *n = NULL;
	ck_assert_int_eq(store_absorb(x, v, PAGES * page, &n), -EBUSY);
	assert_pages(v, PAGES, "view", as_written);
	assert_pages(m, PAGES, "store", as_filled);
	store_unmap(x, m, PAGES * page);
	ck_assert(store_alone(x));
	store_unmap(x, v, PAGES * page);
}
END_TEST

static size_t open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

START_TEST(test_the_last_unmap_closes_the_store)
{
	size_t before = open_fds();
	char *m, *v;
	struct store *x = filled(&m);

	ck_assert_uint_eq(open_fds(), before + 1);
	ck_assert_int_eq(store_view(x, PAGES * page, STORE_READS_ALL, (void **)&v), 0);
	store_unmap(x, m, PAGES * page);
	ck_assert_uint_eq(open_fds(), before + 1);
	store_unmap(x, v, PAGES * page);
	ck_assert_uint_eq(open_fds(), before);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_a_view_keeps_its_writes_to_itself);
	tcase_add_test(tc, test_a_record_is_private);
	tcase_add_test(tc, test_a_view_and_the_store_map_each_page_once);
	tcase_add_test(tc, test_a_view_of_a_few_pages_maps_them_as_touched);
	tcase_add_test(tc, test_a_view_past_the_end_holds_zeros);
	tcase_add_test(tc, test_absorb_writes_only_the_pages_the_view_wrote);
	tcase_add_test(tc, test_absorb_without_a_pagemap_writes_every_page);
	tcase_add_test(tc, test_absorb_is_refused_while_another_mapping_lives);
	tcase_add_test(tc, test_the_last_unmap_closes_the_store);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(store_suite());
}

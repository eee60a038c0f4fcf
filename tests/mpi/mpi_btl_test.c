/* MPI jobs that exercise btl/wv through ob1 and osc/rdma: mpi_btl_test MODE, where MODE is
 * pt2pt, coll, osc, threads or kill. Every rank prints "rank R: MODE OK" at the end; any check
 * that fails prints what differed and aborts the job, so the test can fail. */
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_rank, g_size;
static int g_verbose;
#define PHASE(name) \
  do { \
    if (g_verbose) { printf("rank %d: phase %s\n", g_rank, name); fflush(stdout); } \
  } while (0)

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "rank %d: FAIL %s:%d: ", g_rank, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      fflush(stderr);                                      \
      MPI_Abort(MPI_COMM_WORLD, 2);                        \
    }                                                      \
  } while (0)

static unsigned char pattern(int source, size_t i, int salt) {
  return (unsigned char)(source * 31 + i * 7 + (i >> 12) + salt);
}
static void fill(unsigned char* b, size_t n, int source, int salt) {
  for (size_t i = 0; i < n; ++i) b[i] = pattern(source, i, salt);
}
static void verify(const unsigned char* b, size_t n, int source, int salt, const char* what) {
  for (size_t i = 0; i < n; ++i) {
    CHECK(b[i] == pattern(source, i, salt), "%s: %zu bytes from %d: byte %zu is %d, not %d", what,
          n, source, i, b[i], pattern(source, i, salt));
  }
}

static const size_t kSizes[] = {0, 1, 8, 63, 64, 1000, 4096, 8191, 16384, 65536, 65537,
                                262144, 1 << 20, (1 << 20) + 3, 4 << 20, 16 << 20, 64 << 20};
#define NSIZES (sizeof kSizes / sizeof kSizes[0])

static void test_pt2pt(void) {
  const size_t max = 64u << 20;
  unsigned char* sbuf = malloc(max);
  unsigned char* rbuf = malloc(max);
  const int right = (g_rank + 1) % g_size, left = (g_rank + g_size - 1) % g_size;
  for (size_t s = 0; s < NSIZES; ++s) {
    const size_t n = kSizes[s];
    /* blocking: a ring shift, even ranks send first */
    fill(sbuf, n, g_rank, (int)s);
    memset(rbuf, 0, n);
    if (g_rank % 2 == 0) {
      MPI_Send(sbuf, (int)n, MPI_BYTE, right, (int)s, MPI_COMM_WORLD);
      MPI_Recv(rbuf, (int)n, MPI_BYTE, left, (int)s, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(rbuf, (int)n, MPI_BYTE, left, (int)s, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(sbuf, (int)n, MPI_BYTE, right, (int)s, MPI_COMM_WORLD);
    }
    verify(rbuf, n, left, (int)s, "blocking");
    /* non-blocking both ways */
    MPI_Request req[2];
    memset(rbuf, 0, n);
    MPI_Irecv(rbuf, (int)n, MPI_BYTE, left, 100 + (int)s, MPI_COMM_WORLD, &req[0]);
    MPI_Isend(sbuf, (int)n, MPI_BYTE, right, 100 + (int)s, MPI_COMM_WORLD, &req[1]);
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    verify(rbuf, n, left, (int)s, "non-blocking");
    /* synchronous send (sizes up to 4 MiB keep the test short) */
    if (n <= (4u << 20)) {
      memset(rbuf, 0, n);
      MPI_Irecv(rbuf, (int)n, MPI_BYTE, left, 200 + (int)s, MPI_COMM_WORLD, &req[0]);
      MPI_Issend(sbuf, (int)n, MPI_BYTE, right, 200 + (int)s, MPI_COMM_WORLD, &req[1]);
      MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
      verify(rbuf, n, left, (int)s, "synchronous");
    }
  }
  /* derived datatype: every other int of a vector, received contiguously */
  {
    const int count = 300000; /* 1.2 MB of payload: rendezvous, packed in fragments */
    int* strided = malloc(sizeof(int) * 2 * count);
    int* packed = malloc(sizeof(int) * count);
    for (int i = 0; i < 2 * count; ++i) strided[i] = (i % 2 == 0) ? g_rank * 1000000 + i / 2 : -1;
    MPI_Datatype vec;
    MPI_Type_vector(count, 1, 2, MPI_INT, &vec);
    MPI_Type_commit(&vec);
    MPI_Request req[2];
    MPI_Irecv(packed, count, MPI_INT, left, 300, MPI_COMM_WORLD, &req[0]);
    MPI_Isend(strided, 1, vec, right, 300, MPI_COMM_WORLD, &req[1]);
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    for (int i = 0; i < count; ++i) {
      CHECK(packed[i] == left * 1000000 + i, "vector: element %d is %d", i, packed[i]);
    }
    /* and the other way: contiguous sent, strided received */
    for (int i = 0; i < count; ++i) packed[i] = g_rank * 1000000 + i;
    for (int i = 0; i < 2 * count; ++i) strided[i] = -7;
    MPI_Irecv(strided, 1, vec, left, 301, MPI_COMM_WORLD, &req[0]);
    MPI_Isend(packed, count, MPI_INT, right, 301, MPI_COMM_WORLD, &req[1]);
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    for (int i = 0; i < 2 * count; ++i) {
      const int want = (i % 2 == 0) ? left * 1000000 + i / 2 : -7;
      CHECK(strided[i] == want, "strided receive: element %d is %d, not %d", i, strided[i], want);
    }
    MPI_Type_free(&vec);
    free(strided);
    free(packed);
  }
  /* wildcards and probe: everyone sends to rank 0, which receives from any source / any tag */
  {
    const size_t sizes[] = {16, 100000};
    for (int k = 0; k < 2; ++k) {
      const size_t n = sizes[k];
      if (g_rank == 0) {
        for (int i = 1; i < g_size; ++i) {
          MPI_Status st;
          MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
          int count = 0;
          MPI_Get_count(&st, MPI_BYTE, &count);
          CHECK((size_t)count == n, "probe: count %d, expected %zu", count, n);
          CHECK(st.MPI_TAG == 400 + st.MPI_SOURCE, "probe: tag %d from %d", st.MPI_TAG,
                st.MPI_SOURCE);
          memset(rbuf, 0, n);
          MPI_Status st2;
          MPI_Recv(rbuf, (int)n, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st2);
          verify(rbuf, n, st2.MPI_SOURCE, 400 + st2.MPI_SOURCE, "wildcard");
        }
      } else {
        fill(sbuf, n, g_rank, 400 + g_rank);
        MPI_Send(sbuf, (int)n, MPI_BYTE, 0, 400 + g_rank, MPI_COMM_WORLD);
      }
      MPI_Barrier(MPI_COMM_WORLD);
    }
  }
  free(sbuf);
  free(rbuf);
}

static void test_coll(void) {
  const int counts[] = {1, 1000, 300000};
  for (int c = 0; c < 3; ++c) {
    const int n = counts[c];
    long* in = malloc(sizeof(long) * n * g_size);
    long* out = malloc(sizeof(long) * n * g_size);
    for (int i = 0; i < n * g_size; ++i) in[i] = g_rank * 7 + i;
    MPI_Barrier(MPI_COMM_WORLD);
    /* bcast */
    for (int i = 0; i < n; ++i) out[i] = g_rank == 1 % g_size ? 5 * i + 3 : 0;
    MPI_Bcast(out, n, MPI_LONG, 1 % g_size, MPI_COMM_WORLD);
    for (int i = 0; i < n; ++i) CHECK(out[i] == 5 * i + 3, "bcast %d: %ld", i, out[i]);
    /* allreduce / reduce */
    long sum_ranks = (long)g_size * (g_size - 1) / 2;
    MPI_Allreduce(in, out, n, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < n; ++i) {
      CHECK(out[i] == 7 * sum_ranks + (long)g_size * i, "allreduce %d: %ld", i, out[i]);
    }
    memset(out, 0, sizeof(long) * n);
    MPI_Reduce(in, out, n, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
      for (int i = 0; i < n; ++i) CHECK(out[i] == (g_size - 1) * 7 + i, "reduce %d", i);
    }
    /* allgather / gather / scatter */
    MPI_Allgather(in, n, MPI_LONG, out, n, MPI_LONG, MPI_COMM_WORLD);
    for (int r = 0; r < g_size; ++r) {
      for (int i = 0; i < n; ++i) CHECK(out[r * n + i] == r * 7 + i, "allgather %d,%d", r, i);
    }
    MPI_Gather(in, n, MPI_LONG, out, n, MPI_LONG, g_size - 1, MPI_COMM_WORLD);
    if (g_rank == g_size - 1) {
      for (int r = 0; r < g_size; ++r) {
        for (int i = 0; i < n; ++i) CHECK(out[r * n + i] == r * 7 + i, "gather %d,%d", r, i);
      }
    }
    MPI_Scatter(in, n, MPI_LONG, out, n, MPI_LONG, 0, MPI_COMM_WORLD);
    for (int i = 0; i < n; ++i) CHECK(out[i] == g_rank * n + i, "scatter %d: %ld", i, out[i]);
    /* alltoall: block r of rank q holds q*1000+r */
    for (int r = 0; r < g_size; ++r) {
      for (int i = 0; i < n; ++i) in[r * n + i] = g_rank * 1000 + r + i;
    }
    MPI_Alltoall(in, n, MPI_LONG, out, n, MPI_LONG, MPI_COMM_WORLD);
    for (int r = 0; r < g_size; ++r) {
      for (int i = 0; i < n; ++i) {
        CHECK(out[r * n + i] == r * 1000 + g_rank + i, "alltoall %d,%d", r, i);
      }
    }
    /* reduce_scatter_block, scan */
    MPI_Reduce_scatter_block(in, out, n, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < n; ++i) {
      CHECK(out[i] == 1000 * sum_ranks + (long)g_size * (g_rank + i), "reduce_scatter %d", i);
    }
    for (int i = 0; i < n; ++i) in[i] = g_rank + 1;
    MPI_Scan(in, out, n, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < n; ++i) {
      CHECK(out[i] == (long)(g_rank + 1) * (g_rank + 2) / 2, "scan %d", i);
    }
    free(in);
    free(out);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

/* create = 0: MPI_Win_allocate (osc/rdma keeps state in shared memory on one node);
 * create = 1: MPI_Win_create over malloc'd memory (data moves through the BTL's registrations). */
static void test_osc(int create) {
  const int n = 4096;
  int64_t* base = NULL;
  MPI_Win win;
  if (create) {
    base = malloc(sizeof(int64_t) * (n + 8));
    MPI_Win_create(base, sizeof(int64_t) * (n + 8), sizeof(int64_t), MPI_INFO_NULL,
                   MPI_COMM_WORLD, &win);
  } else {
    MPI_Win_allocate(sizeof(int64_t) * (n + 8), sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD,
                     &base, &win);
  }
  const int right = (g_rank + 1) % g_size, left = (g_rank + g_size - 1) % g_size;
  int64_t* local = malloc(sizeof(int64_t) * n);
  /* fence: put to the right, get from the left, accumulate everywhere */
  for (int i = 0; i < n + 8; ++i) base[i] = 0;
  for (int i = 0; i < n; ++i) local[i] = g_rank * 100000 + i;
  MPI_Win_fence(0, win);
  MPI_Put(local, n, MPI_INT64_T, right, 0, n, MPI_INT64_T, win);
  MPI_Win_fence(0, win);
  for (int i = 0; i < n; ++i) CHECK(base[i] == left * 100000 + i, "fence put %d: %ld", i, (long)base[i]);
  memset(local, 0, sizeof(int64_t) * n);
  MPI_Get(local, n, MPI_INT64_T, left, 0, n, MPI_INT64_T, win);
  MPI_Win_fence(0, win);
  for (int i = 0; i < n; ++i) {
    CHECK(local[i] == ((left + g_size - 1) % g_size) * 100000 + i, "fence get %d", i);
  }
  int64_t one = g_rank + 1;
  for (int r = 0; r < g_size; ++r) MPI_Accumulate(&one, 1, MPI_INT64_T, r, n, 1, MPI_INT64_T, MPI_SUM, win);
  MPI_Win_fence(0, win);
  CHECK(base[n] == (int64_t)g_size * (g_size + 1) / 2, "fence accumulate: %ld", (long)base[n]);
  MPI_Win_fence(0, win);
  PHASE("fence done");
  /* PSCW: ring; each rank exposes to its left neighbour and accesses its right one */
  MPI_Group world, to, from;
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  MPI_Group_incl(world, 1, &right, &to);
  MPI_Group_incl(world, 1, &left, &from);
  MPI_Win_post(from, 0, win);
  MPI_Win_start(to, 0, win);
  int64_t v = 4242 + g_rank;
  MPI_Put(&v, 1, MPI_INT64_T, right, n + 1, 1, MPI_INT64_T, win);
  MPI_Win_complete(win);
  MPI_Win_wait(win);
  CHECK(base[n + 1] == 4242 + left, "pscw put: %ld", (long)base[n + 1]);
  MPI_Group_free(&to);
  MPI_Group_free(&from);
  MPI_Group_free(&world);
  MPI_Barrier(MPI_COMM_WORLD);
  PHASE("pscw done");
  /* passive target: fetch-and-op, compare-and-swap, accumulate on rank 0 */
  base[n + 2] = 0;
  base[n + 3] = -1;
  MPI_Barrier(MPI_COMM_WORLD);
  int64_t add = 1, prior = 0, got = 0;
  for (int k = 0; k < 50; ++k) {
    MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win);
    MPI_Fetch_and_op(&add, &prior, MPI_INT64_T, 0, n + 2, MPI_SUM, win);
    MPI_Win_unlock(0, win);
  }
  PHASE("fetch_and_op done");
  int64_t mine = g_rank, compare = -1;
  for (;;) {
    MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win);
    MPI_Compare_and_swap(&mine, &compare, &got, MPI_INT64_T, 0, n + 3, win);
    MPI_Win_unlock(0, win);
    if (got == -1 || got != compare) break;
  }
  MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win);
  MPI_Accumulate(&one, 1, MPI_INT64_T, 0, n + 4, 1, MPI_INT64_T, MPI_SUM, win);
  MPI_Win_unlock(0, win);
  MPI_Barrier(MPI_COMM_WORLD);
  if (g_rank == 0) {
    MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win);
    const int64_t counter = base[n + 2], owner = base[n + 3], acc = base[n + 4];
    MPI_Win_unlock(0, win);
    CHECK(counter == 50 * g_size, "fetch_and_op: counter %ld, expected %d", (long)counter,
          50 * g_size);
    CHECK(owner >= 0 && owner < g_size, "compare_and_swap: owner %ld", (long)owner);
    CHECK(acc == (int64_t)g_size * (g_size + 1) / 2, "passive accumulate: %ld", (long)acc);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  free(local);
  MPI_Win_free(&win);
  if (create) free(base);
}

/* Passive-target gets while the target computes without calling MPI: on shm they are served
 * one-sided (the origin checks the target's published keys and copies), on tcp by the target's
 * progress thread. The data must be the target's, also after the target changed it. */
static void spin_seconds(double seconds) {
  const double end = MPI_Wtime() + seconds;
  while (MPI_Wtime() < end) {
  }
}
static void test_osc_busy_target(void) {
  const int n = 8192;
  int64_t* base = malloc(sizeof(int64_t) * n);
  MPI_Win win;
  MPI_Win_create(base, sizeof(int64_t) * n, sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD, &win);
  int64_t* local = malloc(sizeof(int64_t) * n);
  const int counts[] = {1, 64, 4096, n};
  for (int round = 0; round < 2; ++round) {
    if (g_rank == 0) {
      MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win);
      for (int i = 0; i < n; ++i) base[i] = round * 1000000 + i;
      MPI_Win_unlock(0, win);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
      spin_seconds(0.2);
    } else {
      MPI_Win_lock_all(0, win);
      for (int k = 0; k < 20; ++k) {
        const int count = counts[k % 4];
        memset(local, 0xff, sizeof(int64_t) * count);
        MPI_Get(local, count, MPI_INT64_T, 0, 0, count, MPI_INT64_T, win);
        MPI_Win_flush(0, win);
        for (int i = 0; i < count; ++i) {
          CHECK(local[i] == round * 1000000 + i, "busy-target get of %d: element %d is %ld", count,
                i, (long)local[i]);
        }
        spin_seconds(0.001);
      }
      MPI_Win_unlock_all(win);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  PHASE("busy target done");
  MPI_Win_free(&win);
  free(local);
  free(base);
}

struct thread_arg {
  int id;
};
static void* ping_pong_thread(void* p) {
  const int id = ((struct thread_arg*)p)->id;
  const size_t sizes[] = {8, 4096, 70000, 1 << 20};
  const int peer = g_rank ^ 1;
  unsigned char* s = malloc(1 << 20);
  unsigned char* r = malloc(1 << 20);
  for (int k = 0; k < 4; ++k) {
    const size_t n = sizes[k];
    for (int it = 0; it < 20; ++it) {
      fill(s, n, g_rank, id + it);
      if (g_rank % 2 == 0) {
        MPI_Send(s, (int)n, MPI_BYTE, peer, id, MPI_COMM_WORLD);
        MPI_Recv(r, (int)n, MPI_BYTE, peer, id, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else {
        MPI_Recv(r, (int)n, MPI_BYTE, peer, id, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(s, (int)n, MPI_BYTE, peer, id, MPI_COMM_WORLD);
      }
      verify(r, n, peer, id + it, "thread ping-pong");
    }
  }
  free(s);
  free(r);
  return NULL;
}

static void test_threads(void) {
  CHECK(g_size % 2 == 0, "threads needs an even number of ranks");
  pthread_t threads[4];
  struct thread_arg args[4];
  for (int i = 0; i < 4; ++i) {
    args[i].id = i;
    pthread_create(&threads[i], NULL, ping_pong_thread, &args[i]);
  }
  for (int i = 0; i < 4; ++i) pthread_join(threads[i], NULL);
  MPI_Barrier(MPI_COMM_WORLD);
}

/* The last rank kills itself while the others are talking to it; mpirun must end the job. */
static void test_kill(void) {
  MPI_Barrier(MPI_COMM_WORLD);
  char buf[65536];
  memset(buf, 1, sizeof buf);
  if (g_rank == g_size - 1) {
    MPI_Recv(buf, sizeof buf, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    fprintf(stderr, "rank %d: killing myself\n", g_rank);
    fflush(stderr);
    raise(SIGKILL);
  }
  if (g_rank == 0) MPI_Send(buf, sizeof buf, MPI_BYTE, g_size - 1, 1, MPI_COMM_WORLD);
  /* Survivors wait for a message the dead rank never sends. */
  MPI_Recv(buf, sizeof buf, MPI_BYTE, g_size - 1, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  fprintf(stderr, "rank %d: FAIL received from a dead rank\n", g_rank);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "pt2pt";
  int provided = 0;
  if (strcmp(mode, "threads") == 0) {
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  } else {
    MPI_Init(&argc, &argv);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  g_verbose = getenv("MPI_BTL_TEST_VERBOSE") != NULL;
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  if (strcmp(mode, "threads") == 0) {
    CHECK(provided == MPI_THREAD_MULTIPLE, "MPI_THREAD_MULTIPLE not provided (%d)", provided);
  }
  if (strcmp(mode, "pt2pt") == 0) {
    test_pt2pt();
  } else if (strcmp(mode, "coll") == 0) {
    test_coll();
  } else if (strcmp(mode, "osc") == 0) {
    test_osc(0);
    test_osc(1);
    test_osc_busy_target();
  } else if (strcmp(mode, "threads") == 0) {
    test_threads();
  } else if (strcmp(mode, "kill") == 0) {
    test_kill();
  } else {
    CHECK(0, "unknown mode %s", mode);
  }
  printf("rank %d: %s OK\n", g_rank, mode);
  fflush(stdout);
  MPI_Finalize();
  return 0;
}

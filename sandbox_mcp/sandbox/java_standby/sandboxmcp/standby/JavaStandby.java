/*
 * A Java run on standby (sandbox_mcp/sandbox/warm_java.py): a JVM started, confined, before
 * its call. It warms the in-process compiler, waits for the go, compiles the caller's files
 * as `javac` would, reports the build to its supervisor, then runs the entry class's main()
 * as `java -cp BUILD ENTRY ARGS` would.
 *
 * Started as `java <flags> -cp BUILD:THIS_DIR sandboxmcp.standby.JavaStandby GO REPORT`, where
 * GO and REPORT are descriptor numbers: the go arrives on the pipe GO, as NUL-ended fields
 * (see warm_java.py), and the build's outcome leaves on the pipe REPORT. Descriptor 0 is the
 * run's stdin, which this class never reads.
 */
package sandboxmcp.standby;

import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import javax.tools.FileObject;
import javax.tools.ForwardingJavaFileManager;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileManager;
import javax.tools.JavaFileObject;
import javax.tools.SimpleJavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;

public final class JavaStandby {
    // Compiles of a small program before the go: enough for the compiler's classes to be
    // loaded and its hot paths compiled by the JIT, stopped early when the go is there.
    private static final int WARMING_ROUNDS = 4;

    private JavaStandby() {}

    public static void main(String[] argv) throws Throwable {
        JavaCompiler compiler = ToolProvider.getSystemJavaCompiler();
        try (InputStream go = new FileInputStream("/proc/self/fd/" + argv[0])) {
            for (int round = 0; round < WARMING_ROUNDS && go.available() == 0; round++) {
                warm(compiler, round);
            }
            List<String> fields = fieldsOf(readAll(go));
            if (fields.size() < 5 || !fields.get(0).equals("go")) {
                System.exit(0); // never used: the supervisor is cleaning up
            }
            go(compiler, fields, "/proc/self/fd/" + argv[1]);
        }
    }

    /** The go: [go, keep bytes, max output bytes, entry, n, n javac args..., program args...]. */
    private static void go(JavaCompiler compiler, List<String> fields, String report)
            throws Throwable {
        int keep = Integer.parseInt(fields.get(1));
        long most = Long.parseLong(fields.get(2));
        String entry = fields.get(3);
        int count = Integer.parseInt(fields.get(4));
        List<String> javac = fields.subList(5, 5 + count);
        String[] args = fields.subList(5 + count, fields.size()).toArray(new String[0]);

        // 1. Build, as `javac ARGS` in the workdir would; the outcome goes to the supervisor.
        Capture out = new Capture(keep, most);
        Capture err = new Capture(keep, most);
        long started = System.nanoTime();
        int status = compile(compiler, javac, out, err);
        long micros = (System.nanoTime() - started) / 1000;
        try (OutputStream sink = new FileOutputStream(report)) {
            String limit = out.over || err.over ? "output" : "-";
            String header = status + " " + micros + " " + limit + " " + out.header() + " "
                    + err.header() + "\n";
            sink.write(header.getBytes(StandardCharsets.UTF_8));
            out.writeTo(sink);
            err.writeTo(sink);
        }
        if (status != 0) {
            System.exit(status);
        }

        // 2. Run, as `java -cp BUILD ENTRY ARGS` would.
        String build = javac.get(javac.indexOf("-d") + 1);
        System.setProperty("java.class.path", build);
        System.setProperty("sun.java.command", String.join(" ", command(entry, args)));
        run(entry, args);
    }

    private static int compile(JavaCompiler compiler, List<String> javac, Capture out,
            Capture err) {
        List<String> options = new ArrayList<>();
        // The javac launcher's class path, when none is given, is the working directory; in
        // process it would be this JVM's.
        if (!javac.contains("-cp") && !javac.contains("-classpath")
                && !javac.contains("--class-path")) {
            options.add("-classpath");
            options.add(".");
        }
        options.addAll(javac);
        try {
            return compiler.run(null, out, err, options.toArray(new String[0]));
        } catch (Capture.Full full) {
            return 1;
        }
    }

    private static List<String> command(String entry, String[] args) {
        List<String> words = new ArrayList<>();
        words.add(entry);
        words.addAll(Arrays.asList(args));
        return words;
    }

    private static void run(String entry, String[] args) throws Throwable {
        ClassLoader loader = ClassLoader.getSystemClassLoader();
        Class<?> main;
        try {
            main = Class.forName(entry, false, loader);
        } catch (ClassNotFoundException | LinkageError missing) {
            System.err.println("Error: Could not find or load main class " + entry);
            System.err.println("Caused by: " + missing);
            System.exit(1);
            return;
        }
        Method method;
        try {
            method = main.getMethod("main", String[].class);
        } catch (NoSuchMethodException none) {
            method = null;
        }
        if (method == null || !Modifier.isStatic(method.getModifiers())
                || method.getReturnType() != void.class) {
            System.err.println("Error: Main method not found in class " + entry
                    + ", please define the main method as:\n"
                    + "   public static void main(String[] args)\n"
                    + "or a JavaFX application class must extend javafx.application.Application");
            System.exit(1);
            return;
        }
        method.setAccessible(true);
        try {
            method.invoke(null, (Object) args);
        } catch (InvocationTargetException thrown) {
            // The launcher prints an exception main() let out and exits 1; rethrown from here
            // it does the same, once the frames below main() are out of its trace.
            throw withoutOurFrames(thrown.getCause());
        } catch (ExceptionInInitializerError failed) {
            throw withoutOurFrames(failed);
        }
    }

    private static Throwable withoutOurFrames(Throwable thrown) {
        Set<Throwable> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        trim(thrown, seen);
        return thrown;
    }

    private static void trim(Throwable thrown, Set<Throwable> seen) {
        if (thrown == null || !seen.add(thrown)) {
            return;
        }
        StackTraceElement[] frames = thrown.getStackTrace();
        int end = frames.length;
        while (end > 0 && isBelowMain(frames[end - 1])) {
            end--;
        }
        if (end != frames.length) {
            thrown.setStackTrace(Arrays.copyOf(frames, end));
        }
        trim(thrown.getCause(), seen);
        for (Throwable suppressed : thrown.getSuppressed()) {
            trim(suppressed, seen);
        }
    }

    private static boolean isBelowMain(StackTraceElement frame) {
        String name = frame.getClassName();
        return name.startsWith("sandboxmcp.standby.")
                || name.startsWith("jdk.internal.reflect.")
                || name.equals("java.lang.reflect.Method");
    }

    /** Everything until the end (readAllBytes of JDK 17 tries to seek, which a pipe cannot). */
    private static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        byte[] chunk = new byte[8192];
        for (int n = in.read(chunk); n >= 0; n = in.read(chunk)) {
            all.write(chunk, 0, n);
        }
        return all.toByteArray();
    }

    private static List<String> fieldsOf(byte[] data) {
        List<String> fields = new ArrayList<>();
        int start = 0;
        for (int i = 0; i < data.length; i++) {
            if (data[i] == 0) {
                fields.add(new String(data, start, i - start, StandardCharsets.UTF_8));
                start = i + 1;
            }
        }
        return fields;
    }

    // --- warming --------------------------------------------------------------------------

    private static void warm(JavaCompiler compiler, int round) throws IOException {
        String name = "Warm" + round;
        String source = "import java.util.*;\n"
                + "public class " + name + " {\n"
                + "    record Point(int x, int y) {}\n"
                + "    public static void main(String[] args) {\n"
                + "        List<String> words = new ArrayList<>(Arrays.asList(args));\n"
                + "        Map<String, Integer> counts = new HashMap<>();\n"
                + "        for (String word : words) counts.merge(word, 1, Integer::sum);\n"
                + "        System.out.println(String.format(\"%d %s\", words.size(), counts)"
                + " + new Point(1, 2));\n"
                + "    }\n"
                + "}\n";
        JavaFileObject file = new SimpleJavaFileObject(
                URI.create("string:///" + name + ".java"), JavaFileObject.Kind.SOURCE) {
            @Override
            public CharSequence getCharContent(boolean ignoreEncodingErrors) {
                return source;
            }
        };
        PrintWriter quiet = new PrintWriter(OutputStream.nullOutputStream());
        StandardJavaFileManager standard = compiler.getStandardFileManager(null, null, null);
        try (JavaFileManager inMemory = new Discarding(standard)) {
            compiler.getTask(quiet, inMemory, null, List.of("-proc:none"), null, List.of(file))
                    .call();
        }
    }

    /** A file manager that throws the class files away: warming leaves nothing on disk. */
    private static final class Discarding extends ForwardingJavaFileManager<JavaFileManager> {
        Discarding(JavaFileManager inner) {
            super(inner);
        }

        @Override
        public JavaFileObject getJavaFileForOutput(Location location, String className,
                JavaFileObject.Kind kind, FileObject sibling) {
            return new SimpleJavaFileObject(
                    URI.create("discard:///" + className.replace('.', '/') + kind.extension),
                    kind) {
                @Override
                public OutputStream openOutputStream() {
                    return OutputStream.nullOutputStream();
                }
            };
        }
    }

    // --- the build's output ---------------------------------------------------------------

    /**
     * One stream of the build's output as the supervisor keeps it: the first and last bytes,
     * `keep` in all, and the total; past `most` bytes the build stops (the output limit).
     */
    private static final class Capture extends OutputStream {
        static final class Full extends RuntimeException {
            Full() {
                super("the build's output is over the limit", null, false, false);
            }
        }

        private final int headLimit;
        private final int tailLimit;
        private final long most;
        private final ByteArrayOutputStream head = new ByteArrayOutputStream();
        private final byte[] tail;
        private int tailStart;
        private int tailLength;
        long total;
        boolean over;

        Capture(int keep, long most) {
            this.headLimit = keep / 2;
            this.tailLimit = keep - headLimit;
            this.tail = new byte[tailLimit];
            this.most = most;
        }

        @Override
        public void write(int b) {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] data, int offset, int length) {
            total += length;
            if (total > most) {
                over = true;
                throw new Full();
            }
            int room = Math.min(headLimit - head.size(), length);
            if (room > 0) {
                head.write(data, offset, room);
                offset += room;
                length -= room;
            }
            for (int i = 0; i < length && tailLimit > 0; i++) {
                tail[(tailStart + tailLength) % tailLimit] = data[offset + i];
                if (tailLength < tailLimit) {
                    tailLength++;
                } else {
                    tailStart = (tailStart + 1) % tailLimit;
                }
            }
        }

        String header() {
            return total + " " + head.size() + " " + tailLength;
        }

        void writeTo(OutputStream sink) throws IOException {
            head.writeTo(sink);
            byte[] ordered = new byte[tailLength];
            for (int i = 0; i < tailLength; i++) {
                ordered[i] = tail[(tailStart + i) % tailLimit];
            }
            sink.write(ordered);
        }
    }
}

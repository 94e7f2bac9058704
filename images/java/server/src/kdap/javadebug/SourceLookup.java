package kdap.javadebug;

import java.net.URI;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import com.google.gson.JsonElement;
import com.microsoft.java.debug.core.JavaBreakpointLocation;
import com.microsoft.java.debug.core.adapter.IDebugAdapterContext;
import com.microsoft.java.debug.core.adapter.ISourceLookUpProvider;
import com.microsoft.java.debug.core.protocol.Types;

// SourceLookup maps the IDE's .java files to classes and back without
// reading them (they are on the IDE's machine): kdap sends the IDE's source
// roots as the attach request's sourcePaths (…/src/main/java), so
// ROOT/com/shop/Pricing.java is class com.shop.Pricing, and a frame in
// com/shop/Pricing.java is shown from that root — if kdap listed that file
// among the IDE's (kdapSourceFiles: root → files below it), so that frames
// of the JDK and of libraries show no path the IDE does not have. A
// breakpoint names the top-level class; java-debug finds its line in
// nested, anonymous and lambda classes itself.
final class SourceLookup implements ISourceLookUpProvider {
    private volatile IDebugAdapterContext context;
    private final Map<String, String> rootByPackage = new ConcurrentHashMap<>(); // "com/shop" → the root it was seen under
    private volatile Map<String, String> knownFiles; // "com/shop/Pricing.java" → its root; null: not listed

    // setKnownFiles takes kdap's list of the IDE's files (null: none given).
    void setKnownFiles(JsonElement listed) {
        if (listed == null || !listed.isJsonObject()) {
            return;
        }
        Map<String, String> files = new HashMap<>();
        for (Map.Entry<String, JsonElement> root : listed.getAsJsonObject().entrySet()) {
            if (root.getValue().isJsonArray()) {
                for (JsonElement f : root.getValue().getAsJsonArray()) {
                    files.putIfAbsent(f.getAsString(), root.getKey());
                }
            }
        }
        knownFiles = files;
    }

    @Override
    public void initialize(IDebugAdapterContext context, Map<String, Object> options) {
        this.context = context;
    }

    @Override
    public boolean supportsRealtimeBreakpointVerification() {
        return true; // a breakpoint in a class not loaded yet is verified when it loads
    }

    @Override
    public String[] getFullyQualifiedName(String uri, int[] lines, int[] columns) {
        String[] out = new String[lines.length];
        Arrays.fill(out, className(path(uri)));
        return out;
    }

    @Override
    public JavaBreakpointLocation[] getBreakpointLocations(String uri, Types.SourceBreakpoint[] breakpoints) {
        String className = className(path(uri));
        JavaBreakpointLocation[] out = new JavaBreakpointLocation[breakpoints.length];
        for (int i = 0; i < breakpoints.length; i++) {
            out[i] = new JavaBreakpointLocation(breakpoints[i].line, breakpoints[i].column);
            out[i].setClassName(className);
        }
        return out;
    }

    @Override
    public String getSourceFileURI(String fullyQualifiedName, String sourcePath) {
        Map<String, String> known = knownFiles;
        if (known != null) {
            String root = known.get(sourcePath);
            return root == null ? null : Paths.get(root, sourcePath).toUri().toString();
        }
        int slash = sourcePath.lastIndexOf('/');
        String pkg = slash < 0 ? "" : sourcePath.substring(0, slash);
        String root = rootByPackage.get(pkg);
        if (root == null) {
            String[] roots = roots();
            if (roots.length == 0) {
                return null;
            }
            root = roots[0];
        }
        return Paths.get(root, sourcePath).toUri().toString();
    }

    @Override
    public String getSourceContents(String uri) {
        return null; // the IDE has the sources
    }

    @Override
    public List<MethodInvocation> findMethodInvocations(String uri, int line) {
        return List.of();
    }

    private String[] roots() {
        IDebugAdapterContext c = context;
        String[] roots = c == null ? null : c.getSourcePaths();
        return roots == null ? new String[0] : roots;
    }

    // className is the top-level class of a .java file: its path below the
    // longest source root that holds it; without one, below a
    // src/main/java-like directory; else the file's name (default package).
    String className(String file) {
        String[] roots = roots().clone();
        Arrays.sort(roots, Comparator.comparingInt(String::length).reversed());
        String rel = null;
        for (String root : roots) {
            String r = root.endsWith("/") ? root : root + "/";
            if (file.startsWith(r)) {
                rel = file.substring(r.length());
                break;
            }
        }
        if (rel == null) {
            for (String marker : List.of("/src/main/java/", "/src/test/java/", "/java/", "/src/")) {
                int i = file.lastIndexOf(marker);
                if (i >= 0) {
                    rel = file.substring(i + marker.length());
                    break;
                }
            }
        }
        if (rel == null) {
            rel = file.substring(file.lastIndexOf('/') + 1);
        } else {
            int slash = rel.lastIndexOf('/');
            rootByPackage.put(slash < 0 ? "" : rel.substring(0, slash), file.substring(0, file.length() - rel.length() - 1));
        }
        if (rel.endsWith(".java")) {
            rel = rel.substring(0, rel.length() - ".java".length());
        }
        return rel.replace('/', '.');
    }

    static String path(String uri) {
        if (uri.startsWith("file:")) {
            return Paths.get(URI.create(uri)).toString();
        }
        return uri;
    }
}

package kdap.javadebug;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import com.microsoft.java.debug.core.IEvaluatableBreakpoint;
import com.microsoft.java.debug.core.adapter.IEvaluationProvider;
import com.sun.jdi.AbsentInformationException;
import com.sun.jdi.ArrayReference;
import com.sun.jdi.BooleanValue;
import com.sun.jdi.CharValue;
import com.sun.jdi.DoubleValue;
import com.sun.jdi.Field;
import com.sun.jdi.FloatValue;
import com.sun.jdi.IncompatibleThreadStateException;
import com.sun.jdi.LocalVariable;
import com.sun.jdi.ObjectReference;
import com.sun.jdi.PrimitiveValue;
import com.sun.jdi.ReferenceType;
import com.sun.jdi.StackFrame;
import com.sun.jdi.StringReference;
import com.sun.jdi.ThreadReference;
import com.sun.jdi.Value;
import com.sun.jdi.VirtualMachine;

// Evaluator evaluates, without a Java compiler, what a debugger needs most:
// variable and field paths (order.items, this.total, args.length, a[0]),
// literals, arithmetic, comparisons and && || ! — for the debug console,
// watches, breakpoint conditions and logpoint messages ("{expr}"). It calls
// no method in the target, so evaluating never changes its state; a method
// call is refused with that reason.
final class Evaluator implements IEvaluationProvider {
    @Override
    public boolean isInEvaluation(ThreadReference thread) {
        return false;
    }

    @Override
    public CompletableFuture<Value> evaluate(String expression, ThreadReference thread, int depth) {
        return run(() -> new Expr(expression, frameOf(thread, depth), null).value());
    }

    @Override
    public CompletableFuture<Value> evaluate(String expression, ObjectReference thisContext, ThreadReference thread) {
        return run(() -> new Expr(expression, frameOf(thread, 0), thisContext).value());
    }

    @Override
    public CompletableFuture<Value> evaluateForBreakpoint(IEvaluatableBreakpoint breakpoint, ThreadReference thread) {
        return run(() -> {
            StackFrame frame = frameOf(thread, 0);
            if (breakpoint.containsConditionalExpression()) {
                return new Expr(breakpoint.getCondition(), frame, null).value();
            }
            return thread.virtualMachine().mirrorOf(logMessage(breakpoint.getLogMessage(), frame));
        });
    }

    @Override
    public CompletableFuture<Value> invokeMethod(ObjectReference thisContext, String methodName, String methodSignature,
            Value[] args, ThreadReference thread, boolean invokeSuper) {
        return CompletableFuture.failedFuture(new EvalException(
                "kdap's Java debugger does not call methods in the target (variable and field paths only): " + methodName));
    }

    @Override
    public void clearState(ThreadReference thread) {
    }

    private static final Pattern PLACEHOLDER = Pattern.compile("\\{([^{}]+)\\}");

    // logMessage fills a logpoint's {expr} placeholders.
    static String logMessage(String template, StackFrame frame) throws EvalException {
        Matcher m = PLACEHOLDER.matcher(template);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            m.appendReplacement(out, Matcher.quoteReplacement(text(new Expr(m.group(1), frame, null).value())));
        }
        m.appendTail(out);
        return out.toString() + "\n";
    }

    static String text(Value v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof StringReference s) {
            return s.value();
        }
        return v.toString();
    }

    static StackFrame frameOf(ThreadReference thread, int depth) throws EvalException {
        try {
            return thread.frame(depth);
        } catch (IncompatibleThreadStateException | IndexOutOfBoundsException e) {
            throw new EvalException("the thread is not stopped at that frame");
        }
    }

    interface Evaluation {
        Value get() throws EvalException;
    }

    static CompletableFuture<Value> run(Evaluation e) {
        try {
            return CompletableFuture.completedFuture(e.get());
        } catch (EvalException | RuntimeException ex) {
            return CompletableFuture.failedFuture(ex);
        }
    }

    static final class EvalException extends Exception {
        EvalException(String message) {
            super(message);
        }
    }

    // Expr parses and evaluates one expression (recursive descent).
    static final class Expr {
        private final List<String> tokens;
        private int pos;
        private final StackFrame frame;
        private final ObjectReference self;
        private final VirtualMachine vm;

        Expr(String source, StackFrame frame, ObjectReference self) throws EvalException {
            this.tokens = tokenize(source);
            this.frame = frame;
            this.self = self != null ? self : frame.thisObject();
            this.vm = frame.virtualMachine();
        }

        Value value() throws EvalException {
            Value v = or();
            if (pos < tokens.size()) {
                throw new EvalException("unexpected \"" + tokens.get(pos) + "\"");
            }
            return v;
        }

        private boolean accept(String t) {
            if (pos < tokens.size() && tokens.get(pos).equals(t)) {
                pos++;
                return true;
            }
            return false;
        }

        private Value or() throws EvalException {
            Value v = and();
            while (accept("||")) {
                boolean left = truth(v);
                Value right = and();
                v = vm.mirrorOf(left || truth(right));
            }
            return v;
        }

        private Value and() throws EvalException {
            Value v = not();
            while (accept("&&")) {
                boolean left = truth(v);
                Value right = not();
                v = vm.mirrorOf(left && truth(right));
            }
            return v;
        }

        private Value not() throws EvalException {
            if (accept("!")) {
                return vm.mirrorOf(!truth(not()));
            }
            return comparison();
        }

        private Value comparison() throws EvalException {
            Value left = sum();
            for (String op : List.of("==", "!=", "<=", ">=", "<", ">")) {
                if (accept(op)) {
                    return vm.mirrorOf(compare(op, left, sum()));
                }
            }
            return left;
        }

        private Value sum() throws EvalException {
            Value v = product();
            while (true) {
                if (accept("+")) {
                    Value r = product();
                    v = isText(v) || isText(r) ? vm.mirrorOf(text(v) + text(r)) : arithmetic('+', v, r);
                } else if (accept("-")) {
                    v = arithmetic('-', v, product());
                } else {
                    return v;
                }
            }
        }

        private Value product() throws EvalException {
            Value v = unary();
            while (true) {
                if (accept("*")) {
                    v = arithmetic('*', v, unary());
                } else if (accept("/")) {
                    v = arithmetic('/', v, unary());
                } else if (accept("%")) {
                    v = arithmetic('%', v, unary());
                } else {
                    return v;
                }
            }
        }

        private Value unary() throws EvalException {
            if (accept("-")) {
                return arithmetic('-', vm.mirrorOf(0), unary());
            }
            return postfix();
        }

        private Value postfix() throws EvalException {
            Value v = primary();
            while (true) {
                if (accept(".")) {
                    String name = identifier();
                    if (accept("(")) {
                        throw new EvalException("kdap's Java debugger does not call methods in the target (variable and field paths only): " + name + "()");
                    }
                    v = member(v, name);
                } else if (accept("[")) {
                    Value index = or();
                    if (!accept("]")) {
                        throw new EvalException("missing ]");
                    }
                    if (!(v instanceof ArrayReference a)) {
                        throw new EvalException("not an array");
                    }
                    int i = (int) integral(index);
                    if (i < 0 || i >= a.length()) {
                        throw new EvalException("index " + i + " out of bounds for length " + a.length());
                    }
                    v = a.getValue(i);
                } else {
                    return v;
                }
            }
        }

        private Value primary() throws EvalException {
            if (pos >= tokens.size()) {
                throw new EvalException("the expression ends too early");
            }
            String t = tokens.get(pos++);
            if (t.equals("(")) {
                Value v = or();
                if (!accept(")")) {
                    throw new EvalException("missing )");
                }
                return v;
            }
            if (t.startsWith("\"")) {
                return vm.mirrorOf(unquote(t));
            }
            if (t.startsWith("'")) {
                return vm.mirrorOf(unquote(t).charAt(0));
            }
            if (Character.isDigit(t.charAt(0))) {
                return number(t);
            }
            switch (t) {
                case "true":
                    return vm.mirrorOf(true);
                case "false":
                    return vm.mirrorOf(false);
                case "null":
                    return null;
                case "this":
                    if (self == null) {
                        throw new EvalException("no this in a static method");
                    }
                    return self;
                default:
                    if (!Character.isJavaIdentifierStart(t.charAt(0))) {
                        throw new EvalException("unexpected \"" + t + "\"");
                    }
                    if (accept("(")) {
                        throw new EvalException("kdap's Java debugger does not call methods in the target (variable and field paths only): " + t + "()");
                    }
                    return name(t);
            }
        }

        private String identifier() throws EvalException {
            if (pos < tokens.size() && Character.isJavaIdentifierStart(tokens.get(pos).charAt(0))) {
                return tokens.get(pos++);
            }
            throw new EvalException("a field name must follow \".\"");
        }

        // name resolves a local variable, then a field of this, then a
        // static field of the frame's class.
        private Value name(String n) throws EvalException {
            try {
                LocalVariable local = frame.visibleVariableByName(n);
                if (local != null) {
                    return frame.getValue(local);
                }
            } catch (AbsentInformationException e) {
                // compiled without -g: no local names
            }
            if (self != null) {
                Field f = self.referenceType().fieldByName(n);
                if (f != null) {
                    return self.getValue(f);
                }
            }
            ReferenceType type = frame.location().declaringType();
            Field f = type.fieldByName(n);
            if (f != null && f.isStatic()) {
                return type.getValue(f);
            }
            throw new EvalException("\"" + n + "\" is not a local variable or field here");
        }

        private Value member(Value v, String n) throws EvalException {
            if (v == null) {
                throw new EvalException("null has no field " + n);
            }
            if (v instanceof ArrayReference a && n.equals("length")) {
                return vm.mirrorOf(a.length());
            }
            if (!(v instanceof ObjectReference o)) {
                throw new EvalException(v.type().name() + " has no field " + n);
            }
            Field f = o.referenceType().fieldByName(n);
            if (f == null) {
                throw new EvalException(o.referenceType().name() + " has no field " + n);
            }
            return o.getValue(f);
        }

        private Value number(String t) throws EvalException {
            try {
                String s = t.replace("_", "");
                if (s.endsWith("L") || s.endsWith("l")) {
                    return vm.mirrorOf(Long.parseLong(s.substring(0, s.length() - 1)));
                }
                if (s.contains(".") || s.endsWith("d") || s.endsWith("D") || s.endsWith("f") || s.endsWith("F")) {
                    return vm.mirrorOf(Double.parseDouble(s));
                }
                long n = Long.parseLong(s);
                return n == (int) n ? vm.mirrorOf((int) n) : vm.mirrorOf(n);
            } catch (NumberFormatException e) {
                throw new EvalException("\"" + t + "\" is not a number");
            }
        }

        private Value arithmetic(char op, Value a, Value b) throws EvalException {
            if (isFloating(a) || isFloating(b)) {
                double x = floating(a), y = floating(b);
                switch (op) {
                    case '+': return vm.mirrorOf(x + y);
                    case '-': return vm.mirrorOf(x - y);
                    case '*': return vm.mirrorOf(x * y);
                    case '/': return vm.mirrorOf(x / y);
                    default: return vm.mirrorOf(x % y);
                }
            }
            long x = integral(a), y = integral(b);
            if ((op == '/' || op == '%') && y == 0) {
                throw new EvalException("division by zero");
            }
            long r = switch (op) {
                case '+' -> x + y;
                case '-' -> x - y;
                case '*' -> x * y;
                case '/' -> x / y;
                default -> x % y;
            };
            return r == (int) r ? vm.mirrorOf((int) r) : vm.mirrorOf(r);
        }

        private boolean compare(String op, Value a, Value b) throws EvalException {
            if (op.equals("==") || op.equals("!=")) {
                boolean eq;
                if (a == null || b == null) {
                    eq = a == b;
                } else if (isText(a) && isText(b)) {
                    eq = text(a).equals(text(b)); // what a user comparing strings means
                } else if (a instanceof PrimitiveValue && b instanceof PrimitiveValue) {
                    eq = a instanceof BooleanValue || b instanceof BooleanValue ? truth(a) == truth(b) : floating(a) == floating(b);
                } else {
                    eq = a.equals(b);
                }
                return op.equals("==") == eq;
            }
            double x = floating(a), y = floating(b);
            return switch (op) {
                case "<" -> x < y;
                case "<=" -> x <= y;
                case ">" -> x > y;
                default -> x >= y;
            };
        }

        private static boolean isText(Value v) {
            return v instanceof StringReference;
        }

        private static boolean isFloating(Value v) {
            return v instanceof DoubleValue || v instanceof FloatValue;
        }

        private static double floating(Value v) throws EvalException {
            if (v instanceof CharValue c) {
                return c.value();
            }
            if (v instanceof PrimitiveValue p && !(v instanceof BooleanValue)) {
                return p.doubleValue();
            }
            throw new EvalException("not a number: " + text(v));
        }

        private static long integral(Value v) throws EvalException {
            if (v instanceof CharValue c) {
                return c.value();
            }
            if (v instanceof PrimitiveValue p && !(v instanceof BooleanValue) && !isFloating(v)) {
                return p.longValue();
            }
            throw new EvalException("not an integer: " + text(v));
        }

        private static boolean truth(Value v) throws EvalException {
            if (v instanceof BooleanValue b) {
                return b.value();
            }
            throw new EvalException("not a boolean: " + text(v));
        }

        private static String unquote(String t) {
            StringBuilder b = new StringBuilder();
            for (int i = 1; i < t.length() - 1; i++) {
                char c = t.charAt(i);
                if (c == '\\' && i + 1 < t.length() - 1) {
                    char n = t.charAt(++i);
                    b.append(switch (n) {
                        case 'n' -> '\n';
                        case 't' -> '\t';
                        case 'r' -> '\r';
                        default -> n;
                    });
                } else {
                    b.append(c);
                }
            }
            return b.toString();
        }

        private static final List<String> OPERATORS = List.of("&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]", ".");

        static List<String> tokenize(String s) throws EvalException {
            List<String> out = new ArrayList<>();
            int i = 0;
            while (i < s.length()) {
                char c = s.charAt(i);
                if (Character.isWhitespace(c)) {
                    i++;
                } else if (c == '"' || c == '\'') {
                    int j = i + 1;
                    while (j < s.length() && s.charAt(j) != c) {
                        j += s.charAt(j) == '\\' ? 2 : 1;
                    }
                    if (j >= s.length()) {
                        throw new EvalException("unterminated " + (c == '"' ? "string" : "character"));
                    }
                    out.add(s.substring(i, j + 1));
                    i = j + 1;
                } else if (Character.isDigit(c)) {
                    int j = i;
                    while (j < s.length() && (Character.isLetterOrDigit(s.charAt(j)) || s.charAt(j) == '_'
                            || s.charAt(j) == '.' && j + 1 < s.length() && Character.isDigit(s.charAt(j + 1)))) {
                        j++;
                    }
                    out.add(s.substring(i, j));
                    i = j;
                } else if (Character.isJavaIdentifierStart(c)) {
                    int j = i;
                    while (j < s.length() && Character.isJavaIdentifierPart(s.charAt(j))) {
                        j++;
                    }
                    out.add(s.substring(i, j));
                    i = j;
                } else {
                    String op = null;
                    for (String o : OPERATORS) {
                        if (s.startsWith(o, i)) {
                            op = o;
                            break;
                        }
                    }
                    if (op == null) {
                        throw new EvalException("unexpected \"" + c + "\"");
                    }
                    out.add(op);
                    i += op.length();
                }
            }
            if (out.isEmpty()) {
                throw new EvalException("empty expression");
            }
            return out;
        }
    }
}
